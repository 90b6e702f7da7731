package gvariant

import "testing"

// FuzzUnmarshal checks that whatever Unmarshal accepts is normal form:
// Marshal gives back exactly the input.
func FuzzUnmarshal(f *testing.F) {
	for _, o := range goldenObjects(f) {
		f.Add(o.sig, o.data)
	}
	f.Add("av", []byte{1, 0, 'y', 0, 0, 0, 0, 0, 2, 0, 'y', 3, 11})
	f.Add("(msmum(ys))", []byte{'a', 0, 0, 7, 0, 0, 0, 1, 'b', 0, 0})
	f.Add("a{sv}", []byte{})
	f.Add("(a()ag)", []byte{0})
	f.Fuzz(func(t *testing.T, sig string, data []byte) {
		ty, err := ParseType(sig)
		if err != nil {
			return
		}
		checkCanonical(t, ty, data)
	})
}
