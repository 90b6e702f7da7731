package ostree

import (
	"fmt"
	"strings"
)

// keyFile is the subset of GLib's key files a repository config uses:
// [groups], key=value lines, comments and blank lines. Lines are kept as read
// so that a rewrite changes only what is set.
type keyFile struct {
	lines []string
}

func parseKeyFile(data string) (*keyFile, error) {
	kf := &keyFile{}
	group := ""
	for i, l := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		t := strings.TrimSpace(l)
		switch {
		case t == "" || t[0] == '#':
		case t[0] == '[':
			if !strings.HasSuffix(t, "]") || len(t) < 3 {
				return nil, fmt.Errorf("line %d: bad group %q", i+1, l)
			}
			group = t[1 : len(t)-1]
		default:
			k, _, ok := strings.Cut(t, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("line %d: not a key=value line: %q", i+1, l)
			}
			if group == "" {
				return nil, fmt.Errorf("line %d: key outside any group", i+1)
			}
		}
		kf.lines = append(kf.lines, l)
	}
	return kf, nil
}

// find returns the index of the group's header line and of the key's line
// (-1 when absent; the last one counts, as in GLib).
func (kf *keyFile) find(group, key string) (int, int) {
	gi, ki := -1, -1
	cur := ""
	for i, l := range kf.lines {
		t := strings.TrimSpace(l)
		switch {
		case t == "" || t[0] == '#':
		case t[0] == '[':
			cur = t[1 : len(t)-1]
			if cur == group && gi < 0 {
				gi = i
			}
		case cur == group:
			k, _, _ := strings.Cut(t, "=")
			if strings.TrimSpace(k) == key {
				ki = i
			}
		}
	}
	return gi, ki
}

func (kf *keyFile) get(group, key string) (string, bool) {
	_, ki := kf.find(group, key)
	if ki < 0 {
		return "", false
	}
	_, v, _ := strings.Cut(kf.lines[ki], "=")
	return strings.TrimLeft(v, " \t"), true
}

func (kf *keyFile) set(group, key, value string) {
	line := key + "=" + value
	gi, ki := kf.find(group, key)
	switch {
	case ki >= 0:
		kf.lines[ki] = line
	case gi >= 0:
		// After the group's last key, before blank lines and the next group.
		at := gi + 1
		for i := gi + 1; i < len(kf.lines); i++ {
			t := strings.TrimSpace(kf.lines[i])
			if t != "" && t[0] == '[' {
				break
			}
			if t != "" {
				at = i + 1
			}
		}
		kf.lines = append(kf.lines[:at], append([]string{line}, kf.lines[at:]...)...)
	default:
		if n := len(kf.lines); n > 0 && strings.TrimSpace(kf.lines[n-1]) != "" {
			kf.lines = append(kf.lines, "")
		}
		kf.lines = append(kf.lines, "["+group+"]", line)
	}
}

func (kf *keyFile) String() string { return strings.Join(kf.lines, "\n") + "\n" }
