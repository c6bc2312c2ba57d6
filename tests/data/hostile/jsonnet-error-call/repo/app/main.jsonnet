error "refusing to render"
