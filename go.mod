module github.com/gocfs/gocfs

go 1.26.0

require (
	github.com/erofs/go-erofs v0.3.1 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
