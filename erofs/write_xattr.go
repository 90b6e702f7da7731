package erofs

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
)

// splitXattrPrefix returns the EROFS name index of an xattr name and the
// suffix stored on disk. The prefixes are tried in the C writer's order and
// matched as plain prefixes, so "system.posix_acl_accessX" is index 2 with
// suffix "X".
func splitXattrPrefix(name string) (uint8, string) {
	for i, p := range xattrIndexPrefixes {
		if i != XattrIndexNone && i != XattrIndexLustre && strings.HasPrefix(name, p) {
			return uint8(i), name[len(p):]
		}
	}
	return XattrIndexNone, name
}

// writtenXattrSize is the on-disk size of an xattr entry, padded to 4 bytes.
func writtenXattrSize(name, value string) uint64 {
	_, suffix := splitXattrPrefix(name)
	return roundUpTo(XattrEntrySize+uint64(len(suffix))+uint64(len(value)), XattrAlign)
}

// xattrBloom is the bloom filter of an inode's xattr names: a set bit
// means no name hashes to it.
func xattrBloom(xs []wxattr) uint32 {
	var f uint32
	for _, x := range xs {
		index, suffix := splitXattrPrefix(x.name)
		f |= 1 << (xxh32String(suffix, XattrFilterSeed+uint32(index)) & (XattrFilterBits - 1))
	}
	return ^f
}

// rewriteXattrs computes every node's final xattrs, sorted by name: the
// input xattrs with trusted.overlay.* escaped one level (overlayfs
// unescapes them), then the overlay xattrs the image needs, which replace
// input xattrs of the same name.
func (iw *imageWriter) rewriteXattrs() error {
	root := &iw.nodes[0]
	selinux, hasSelinux := root.in.Xattr(XattrSecuritySelinux)
	// One more for the root's trusted.overlay.opaque.
	iw.xattrs = make([]wxattr, 0, iw.inputXattrs+iw.addedXattrs+1)
	iw.strs.Grow(iw.strsSize)
	for i := range iw.nodes {
		n := &iw.nodes[i]
		start := int32(len(iw.xattrs))
		if n.in == nil {
			// The root whiteouts take the root's SELinux label.
			if hasSelinux {
				iw.xattrs = append(iw.xattrs, wxattr{name: XattrSecuritySelinux, value: selinux})
			}
		} else {
			for _, x := range n.in.Xattrs {
				name := x.Name
				if strings.HasPrefix(name, OverlayPrefix) {
					name = iw.concat(OverlayEscapedPrefix, name[len(OverlayPrefix):])
				}
				iw.xattrs = append(iw.xattrs, wxattr{name: name, value: x.Value})
			}
		}
		n.xattrs = arenaSpan{start, int32(len(iw.xattrs)) - start}
		xs := iw.xattrs[start:]
		slices.SortFunc(xs, func(a, b wxattr) int { return strings.Compare(a.name, b.name) })
		for k := 1; k < len(xs); k++ {
			if name := xs[k].name; name == xs[k-1].name {
				if strings.HasPrefix(name, OverlayEscapedPrefix) {
					name = OverlayPrefix + name[len(OverlayEscapedPrefix):]
				}
				return fmt.Errorf("erofs: %s: duplicate xattr %q", iw.path(int32(i)), name)
			}
		}
		inputs := n.xattrs.n
		if n.flags&wnExternal != 0 {
			meta := ""
			if len(n.in.Digest) != 0 {
				meta = iw.concatBytes(metacopyHeader(len(n.in.Digest)), n.in.Digest)
			}
			iw.setXattr(n, XattrMetacopy, meta)
			if n.in.Payload != "" {
				iw.setXattr(n, XattrRedirect, iw.concat("/", n.in.Payload))
			}
		}
		if n.flags&wnWhiteout != 0 {
			iw.setXattr(n, XattrEscapedWhiteout, "")
			iw.setXattr(n, XattrUserWhiteout, "")
		}
		if n.flags&wnHasWhiteout != 0 {
			iw.setXattr(n, XattrEscapedWhiteouts, "")
			iw.setXattr(n, XattrUserWhiteouts, "")
			if iw.version >= 1 {
				iw.setXattr(n, XattrEscapedOpaque, "x")
				iw.setXattr(n, XattrUserOpaque, "x")
			}
		}
		if i == 0 {
			// Real, not escaped: overlayfs must not merge the root
			// with layers below the image, such as an object store
			// mounted as an ordinary lower layer.
			iw.setXattr(n, XattrOpaque, "y")
		}
		xs = iw.xattrs[start:n.xattrs.end()]
		if n.xattrs.n != inputs {
			slices.SortFunc(xs, func(a, b wxattr) int { return strings.Compare(a.name, b.name) })
		}
		for _, x := range xs {
			if x.name == XattrPosixACLAccess || x.name == XattrPosixACLDefault {
				iw.flags |= FlagHasACL
			}
		}
	}
	return nil
}

// setXattr sets an xattr of n, the node whose xattrs end the arena,
// replacing the value of an xattr of the same name.
func (iw *imageWriter) setXattr(n *wnode, name, value string) {
	for k := n.xattrs.off; k < n.xattrs.end(); k++ {
		if iw.xattrs[k].name == name {
			iw.xattrs[k].value = value
			return
		}
	}
	iw.xattrs = append(iw.xattrs, wxattr{name: name, value: value})
	n.xattrs.n++
}

// shareXattrs moves every (name, value) pair used by more than one inode to
// the shared table, in the C writer's canonical order: name descending,
// then longer value first, then value bytes descending. An inode refers to
// at most MaxSharedXattrsPerInode shared entries, in its own name order;
// the rest stay inline.
func (iw *imageWriter) shareXattrs() {
	// Pairs are found by a 64-bit hash, which is much cheaper to look up
	// than the strings themselves; the rare pair whose hash collides with
	// another pair's goes to a map keyed by the strings.
	type pair struct{ name, value string }
	var (
		seed   = maphash.MakeSeed()
		h      maphash.Hash
		ids    = make(map[uint64]int32, len(iw.xattrs))
		others map[pair]int32
		counts []int32 // uses of each distinct pair
		first  []int32 // an xattr holding each distinct pair
	)
	h.SetSeed(seed)
	newID := func(k int) int32 {
		counts = append(counts, 0)
		first = append(first, int32(k))
		return int32(len(counts) - 1)
	}
	for k := range iw.xattrs {
		x := &iw.xattrs[k]
		h.Reset()
		h.WriteString(x.name)
		h.WriteByte(0) // names have no NUL: the split is unambiguous
		h.WriteString(x.value)
		sum := h.Sum64()
		id, ok := ids[sum]
		switch {
		case !ok:
			id = newID(k)
			ids[sum] = id
		case iw.xattrs[first[id]].name != x.name || iw.xattrs[first[id]].value != x.value:
			if others == nil {
				others = make(map[pair]int32)
			}
			p := pair{x.name, x.value}
			if id, ok = others[p]; !ok {
				id = newID(k)
				others[p] = id
			}
		}
		counts[id]++
		x.ref = id
	}
	for id, c := range counts {
		if c > 1 {
			iw.sharedTable = append(iw.sharedTable, first[id])
		}
	}
	slices.SortFunc(iw.sharedTable, func(a, b int32) int {
		x, y := &iw.xattrs[a], &iw.xattrs[b]
		if c := strings.Compare(y.name, x.name); c != 0 {
			return c
		}
		if c := cmp.Compare(len(y.value), len(x.value)); c != 0 {
			return c
		}
		return strings.Compare(y.value, x.value)
	})
	// offsets holds each shared pair's byte offset in the table, -1 for
	// pairs that are not shared.
	offsets := make([]int64, len(counts))
	for id := range offsets {
		offsets[id] = -1
	}
	var off uint64
	for _, k := range iw.sharedTable {
		x := &iw.xattrs[k]
		offsets[x.ref] = int64(off)
		off += writtenXattrSize(x.name, x.value)
	}
	iw.sharedSize = off
	for i := range iw.nodes {
		n := &iw.nodes[i]
		shared := 0
		for k := n.xattrs.off; k < n.xattrs.end(); k++ {
			x := &iw.xattrs[k]
			x.sharedOff = -1
			if o := offsets[x.ref]; o >= 0 && shared < MaxSharedXattrsPerInode {
				x.sharedOff = o
				shared++
			}
		}
		n.nShared = uint8(shared)
	}
}
