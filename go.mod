module github.com/gocfs/gocfs

go 1.26
