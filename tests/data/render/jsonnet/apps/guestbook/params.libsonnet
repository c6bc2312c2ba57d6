{
  image: 'registry.example.com/guestbook:1.2.0',
}
