package getopt

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args     []string
		operands []string
		flag     bool
		value    string
		list     []string
		err      bool
	}{
		{args: []string{"a", "b"}, operands: []string{"a", "b"}},
		{args: []string{"--flag", "a"}, operands: []string{"a"}, flag: true},
		{args: []string{"a", "--flag", "b"}, operands: []string{"a", "b"}, flag: true},
		{args: []string{"--value=x", "a"}, operands: []string{"a"}, value: "x"},
		{args: []string{"--value", "x", "a"}, operands: []string{"a"}, value: "x"},
		{args: []string{"--value="}, value: ""},
		{args: []string{"--fl"}, flag: true},
		{args: []string{"--list=1", "--list", "2"}, list: []string{"1", "2"}},
		{args: []string{"--", "--flag"}, operands: []string{"--flag"}},
		{args: []string{"-"}, operands: []string{"-"}},
		{args: []string{"--value"}, err: true},
		{args: []string{"--flag=1"}, err: true},
		{args: []string{"--nope"}, err: true},
		{args: []string{"-x"}, err: true},
	}
	for _, tc := range tests {
		var flag bool
		var value string
		var list []string
		opts := []Option{
			{Name: "flag", Set: Flag(&flag)},
			{Name: "value", HasValue: true, Set: String(&value)},
			{Name: "list", HasValue: true, Set: Append(&list)},
		}
		ops, err := Parse(tc.args, opts)
		if (err != nil) != tc.err {
			t.Errorf("%q: error %v, want error %v", tc.args, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if !reflect.DeepEqual(ops, tc.operands) || flag != tc.flag || value != tc.value || !reflect.DeepEqual(list, tc.list) {
			t.Errorf("%q: got %q %v %q %q", tc.args, ops, flag, value, list)
		}
	}
}

func TestAmbiguousPrefix(t *testing.T) {
	var a, b bool
	opts := []Option{{Name: "skip-xattrs", Set: Flag(&a)}, {Name: "skip-devices", Set: Flag(&b)}}
	if _, err := Parse([]string{"--skip"}, opts); err == nil {
		t.Fatal("ambiguous prefix accepted")
	}
}
