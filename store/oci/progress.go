package oci

import (
	"context"
	"io"
	"os"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// progress shows one bar per blob being fetched when the output is a
// terminal; otherwise it does nothing, so that logs and pipes stay clean.
type progress struct {
	p *mpb.Progress
}

func newProgress(ctx context.Context, w io.Writer) *progress {
	if !isTerminal(w) {
		return &progress{}
	}
	return &progress{p: mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(40))}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// bar is the progress of one blob; the zero value shows nothing.
type bar struct {
	b *mpb.Bar
}

// add starts a bar for a blob of size bytes.
func (p *progress) add(name string, size int64) bar {
	if p.p == nil {
		return bar{}
	}
	return bar{p.p.AddBar(size,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.OnComplete(decor.CountersKibiByte("% .1f / % .1f"), "done")),
	)}
}

// reader counts what is read through r on the bar.
func (b bar) reader(r io.Reader) io.Reader {
	if b.b == nil {
		return r
	}
	return b.b.ProxyReader(r)
}

// done completes the bar, or drops it after a failure.
func (b bar) done(err error) {
	if b.b == nil {
		return
	}
	if err != nil {
		b.b.Abort(false)
		return
	}
	b.b.SetTotal(-1, true)
}

// wait waits for the bars to be drawn for the last time.
func (p *progress) wait() {
	if p.p != nil {
		p.p.Wait()
	}
}
