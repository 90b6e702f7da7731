package erofs

import (
	"crypto/sha256"
	"fmt"
	"io"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
)

// wtLargeTree builds a tree shaped like a distribution's /usr: about 150k
// entries, mostly external files with digests, some symlinks and small
// inline files, a SELinux label on everything and a few other xattrs.
func wtLargeTree() *tree.Inode {
	labels := []string{
		"system_u:object_r:usr_t:s0",
		"system_u:object_r:bin_t:s0",
		"system_u:object_r:lib_t:s0",
		"system_u:object_r:man_t:s0",
	}
	mtime := tree.Timespec{Sec: 1700000000}
	dir := func(label string) *tree.Inode {
		return &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2, Mtime: mtime,
			Xattrs: []tree.Xattr{{Name: "security.selinux", Value: label}}}
	}
	root := dir(labels[0])
	n := 0
	for a := range 20 {
		top := dir(labels[a%len(labels)])
		root.Entries = append(root.Entries, &tree.Dirent{Name: fmt.Sprintf("top%02d", a), Inode: top})
		for b := range 850 {
			sub := dir(labels[b%len(labels)])
			top.Entries = append(top.Entries, &tree.Dirent{Name: fmt.Sprintf("pkg%04d", b), Inode: sub})
			for c := range 8 {
				n++
				label := labels[(a+b+c)%len(labels)]
				name := fmt.Sprintf("file-%d-%d.so", c, n)
				f := &tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 1, Mtime: mtime,
					Xattrs: []tree.Xattr{{Name: "security.selinux", Value: label}}}
				switch {
				case c == 7:
					f.Mode = tree.TypeLnk | 0o777
					f.Payload = fmt.Sprintf("../../top%02d/pkg%04d/file-0-%d.so", a, b, n-7)
					f.Size = uint64(len(f.Payload))
				case n%50 == 0:
					f.Content = []byte(name)
					f.Size = uint64(len(f.Content))
				default:
					d := sha256.Sum256([]byte(name))
					f.Digest = d[:]
					f.Size = uint64(1000 + n*37%1000000)
					f.Payload = fmt.Sprintf("%x/%x", d[:1], d[1:])
					f.Mtime.Sec += int64(n % 3)
					if n%10 == 0 {
						f.Xattrs = append(f.Xattrs, tree.Xattr{Name: "user.checksum", Value: name})
					}
				}
				sub.Entries = append(sub.Entries, &tree.Dirent{Name: name, Inode: f})
			}
			wtSortEntries(sub)
		}
	}
	return root
}

func wtSortEntries(d *tree.Inode) {
	es := d.Entries
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].Name < es[j-1].Name; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// BenchmarkWriteLargeTree writes a /usr-sized tree.
func BenchmarkWriteLargeTree(b *testing.B) {
	root := wtLargeTree()
	b.ReportAllocs()
	var res *WriteResult
	for b.Loop() {
		var err error
		if res, err = Write(io.Discard, root, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(res.Inodes), "inodes")
	b.ReportMetric(float64(res.Size), "bytes")
}
