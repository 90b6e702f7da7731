// Command demoimage serves the boot tests' image (package vm) from a
// private registry until it is interrupted, for make demo: it starts the
// registry (package registry) with its storage in DIR, pushes the image
// with PROGRAM as its /sbin/init and prints the image's reference.
//
//	demoimage -init PROGRAM -dir DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/tests/registry"
	"github.com/gocfs/gocfs/tests/vm"
)

func main() {
	initProg := flag.String("init", "", "the image's /sbin/init `PROGRAM` (statically linked)")
	dir := flag.String("dir", "", "`DIR` for the registry's storage (created)")
	flag.Parse()
	if *initProg == "" || *dir == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*initProg, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "demoimage:", err)
		os.Exit(1)
	}
}

func run(initProg, dir string) error {
	prog, err := os.ReadFile(initProg)
	if err != nil {
		return err
	}
	built, err := ocibuild.Build(vm.Image(prog))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	reg, err := registry.Launch(dir)
	if err != nil {
		return err
	}
	defer reg.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref := reg.Ref("gocfs/demo", "latest")
	if err := built.Push(ctx, ref, reg.SystemContext()); err != nil {
		return err
	}
	fmt.Println(ref)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}
