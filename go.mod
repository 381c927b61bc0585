module github.com/myopenclaw/mocd

go 1.26.8
