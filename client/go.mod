module github.com/myopenclaw/mocd/client

go 1.23
