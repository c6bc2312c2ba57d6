std.foldl(function(acc, x) acc + x, std.range(0, 2000000000), 0)
