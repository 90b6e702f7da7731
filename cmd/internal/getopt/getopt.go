// Package getopt parses command lines the way GNU getopt_long does for long
// options, so that the drop-in tools accept exactly what the C tools accept:
// "--name", "--name=value", "--name value" for options that take a value,
// options mixed with operands, and "--" to end the options.
package getopt

import (
	"fmt"
	"strings"
)

// Option describes one long option.
type Option struct {
	Name     string
	HasValue bool
	// Set is called for each occurrence, with the value when HasValue.
	Set func(value string) error
}

// Parse parses args (without the program name) and returns the operands in
// order. Unknown options, a missing value and a value given to a flag are
// errors. A unique prefix of an option name is accepted, as getopt_long does.
func Parse(args []string, opts []Option) ([]string, error) {
	var operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(operands, args[i+1:]...), nil
		}
		if !strings.HasPrefix(a, "--") {
			if len(a) > 1 && a[0] == '-' {
				return nil, fmt.Errorf("invalid option -- '%s'", a[1:])
			}
			operands = append(operands, a)
			continue
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		o, err := lookup(opts, name)
		if err != nil {
			return nil, err
		}
		switch {
		case o.HasValue && !hasValue:
			if i+1 >= len(args) {
				return nil, fmt.Errorf("option '--%s' requires an argument", o.Name)
			}
			i++
			value = args[i]
		case !o.HasValue && hasValue:
			return nil, fmt.Errorf("option '--%s' doesn't allow an argument", o.Name)
		}
		if err := o.Set(value); err != nil {
			return nil, err
		}
	}
	return operands, nil
}

func lookup(opts []Option, name string) (*Option, error) {
	var match *Option
	for i := range opts {
		o := &opts[i]
		if o.Name == name {
			return o, nil
		}
		if strings.HasPrefix(o.Name, name) && name != "" {
			if match != nil {
				return nil, fmt.Errorf("option '--%s' is ambiguous", name)
			}
			match = o
		}
	}
	if match == nil {
		return nil, fmt.Errorf("unrecognized option '--%s'", name)
	}
	return match, nil
}

// Flag returns a Set function that sets *b.
func Flag(b *bool) func(string) error {
	return func(string) error { *b = true; return nil }
}

// String returns a Set function that stores the value in *s.
func String(s *string) func(string) error {
	return func(v string) error { *s = v; return nil }
}

// Append returns a Set function that appends the value to *s.
func Append(s *[]string) func(string) error {
	return func(v string) error { *s = append(*s, v); return nil }
}
