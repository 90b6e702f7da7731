// Command testsum reads `go test -json` on standard input and prints a
// summary meant for CI logs: each package's result, every skipped test with
// the reason it gave, the whole output of failed tests and failed builds,
// and a closing "N passed, N failed, N skipped" line. It exits non-zero when
// anything failed, so a skip can never pass for a success unnoticed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	outputs := map[string][]string{} // package/test -> output lines
	var passed, failed, skipped int
	bad := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event: build errors and the like, printed as they come.
			fmt.Println(string(line))
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "output", "build-output":
			outputs[key] = append(outputs[key], e.Output)
		case "build-fail":
			bad = true
			fmt.Print(strings.Join(outputs[key], ""))
		case "pass":
			if e.Test == "" {
				fmt.Printf("ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			} else {
				passed++
			}
			delete(outputs, key)
		case "skip":
			if e.Test == "" {
				fmt.Printf("?   \t%s\t[no test files or all skipped]\n", e.Package)
			} else {
				skipped++
				fmt.Printf("SKIP\t%s\t%s: %s\n", e.Package, e.Test, skipReason(outputs[key]))
			}
			delete(outputs, key)
		case "fail":
			bad = true
			if e.Test == "" {
				fmt.Print(strings.Join(outputs[key], ""))
				fmt.Printf("FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			} else {
				failed++
				fmt.Printf("--- FAIL: %s (%s)\n%s", e.Test, e.Package, strings.Join(outputs[key], ""))
			}
			delete(outputs, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		bad = true
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if bad || failed > 0 {
		os.Exit(1)
	}
}

// skipReason picks the message a skipped test logged: the lines after the
// "--- SKIP" header, or the last line of output.
func skipReason(lines []string) string {
	var msgs []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		// Drop the "file_test.go:12: " location prefix.
		if i := strings.Index(t, ": "); i > 0 && strings.Contains(t[:i], ".go:") {
			t = t[i+2:]
		}
		msgs = append(msgs, t)
	}
	if len(msgs) == 0 {
		return "(no reason given)"
	}
	return strings.Join(msgs, "; ")
}
