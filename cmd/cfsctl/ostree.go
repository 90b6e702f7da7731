package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gocfs/gocfs/ostreecompat"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/store"
)

// ostreeCommand is the "ostree" command group: commits synthesized from
// repository images, the unified-storage policy and deployments.
func ostreeCommand(ctx context.Context) *cli.Command {
	repoFlag := &cli.StringFlag{Name: "ostree-repo", Usage: "ostree repository `DIR` (default: the one the unified-storage marker names, else ostree/repo beside the composefs repository)"}
	policyFlag := func(def string) *cli.StringFlag {
		return &cli.StringFlag{Name: "policy", Value: def, Usage: "unified storage `POLICY`: disabled, enabled (reflinks required) or enabled-with-copy"}
	}
	return &cli.Command{Name: "ostree", Usage: "ostree commits and deployments of repository images", Subcommands: []*cli.Command{
		{Name: "commit", Usage: "synthesize the ostree commit of an image, sharing its files' blocks where the policy says", ArgsUsage: "IMAGE",
			Flags: []cli.Flag{repoFlag, policyFlag(""),
				&cli.StringFlag{Name: "branch", Usage: "ostree `REF` to point at the commit (required)"},
			}, Action: withRepo(func(c *cli.Context, r *store.Repository) error { return cmdOSTreeCommit(ctx, c, r) })},
		{Name: "set-unified", Usage: "bind the ostree repository to this one: composefs (commits of every tagged image) or full (also every other ostree file)", ArgsUsage: "composefs|full",
			Flags:  []cli.Flag{repoFlag, policyFlag("enabled")},
			Action: withRepo(func(c *cli.Context, r *store.Repository) error { return cmdOSTreeSetUnified(ctx, c, r) })},
		{Name: "status", Usage: "show the unified-storage state: unified, bound or none", Flags: []cli.Flag{repoFlag}, Action: withRepo(cmdOSTreeStatus)},
		{Name: "fsck", Usage: "check that every tagged image has its commit and every image commit its image", Flags: []cli.Flag{repoFlag, policyFlag(""),
			&cli.BoolFlag{Name: "repair", Usage: "synthesize missing commits again, drop the refs of images gone from the repository"},
			&cli.BoolFlag{Name: "deep", Usage: "check each commit against its image's content, not only the source it records"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		}, Action: withRepo(func(c *cli.Context, r *store.Repository) error { return cmdOSTreeFsck(ctx, c, r) })},
		{Name: "deploy", Usage: "deploy an image into an ostree sysroot (composefs, no checkout) and make it the default boot entry", ArgsUsage: "IMAGE",
			Flags: []cli.Flag{policyFlag(""),
				&cli.StringFlag{Name: "sysroot", Usage: "sysroot `DIR` (its ostree/repo is used, and made if missing; required)"},
				&cli.StringFlag{Name: "stateroot", Usage: "stateroot (operating system) `NAME` (required)"},
				&cli.StringFlag{Name: "branch", Usage: "ostree `REF` to point at the commit and record as the origin"},
				&cli.StringSliceFlag{Name: "karg", Usage: "kernel `ARG` of the boot entry, repeated (root=..., rw)"},
				&cli.BoolFlag{Name: "retain", Usage: "keep every earlier deployment (default: the previous one of the stateroot only)"},
			}, Action: withRepo(func(c *cli.Context, r *store.Repository) error { return cmdOSTreeDeploy(ctx, c, r) })},
	}}
}

// ostreeRepoPath is --ostree-repo, or the repository the marker names, or
// the sysroot layout's ostree/repo beside the composefs repository.
func ostreeRepoPath(c *cli.Context, st *store.Repository) (string, error) {
	if p := c.String("ostree-repo"); p != "" {
		return p, nil
	}
	m, err := ostreecompat.ReadMarker(st.Path())
	if err != nil {
		return "", err
	}
	if m != nil {
		return m.RepoPath(st.Path()), nil
	}
	return filepath.Join(filepath.Dir(filepath.Clean(st.Path())), "ostree", "repo"), nil
}

// openOSTree opens the ostree repository; with create, a missing one is
// made (bare as root, bare-user otherwise).
func openOSTree(c *cli.Context, st *store.Repository, create bool) (*ostree.Repo, error) {
	p, err := ostreeRepoPath(c, st)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(p, "objects")); errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("no ostree repository at %s (use --ostree-repo)", p)
		}
		mode := ostree.ModeBare
		if os.Geteuid() != 0 {
			mode = ostree.ModeBareUser
		}
		return ostree.Create(p, mode)
	}
	return ostree.Open(p)
}

// policy is --policy, or the policy the store's marker records.
func policy(c *cli.Context, st *store.Repository) (ostreecompat.Policy, error) {
	if s := c.String("policy"); s != "" {
		return ostreecompat.ParsePolicy(s)
	}
	return ostreecompat.DefaultPolicy(st.Path())
}

func cmdOSTreeCommit(ctx context.Context, c *cli.Context, st *store.Repository) error {
	args, err := interspersed(c, 1, "branch")
	if err != nil {
		return fmt.Errorf("%w\nusage: cfsctl ostree commit IMAGE --branch REF [--ostree-repo DIR] [--policy POLICY]", err)
	}
	p, err := policy(c, st)
	if err != nil {
		return err
	}
	repo, err := openOSTree(c, st, true)
	if err != nil {
		return err
	}
	defer repo.Close()
	res, err := ostreecompat.Commit(ctx, st, repo, args[0], ostreecompat.CommitOptions{Branch: c.String("branch"), Policy: p})
	if err != nil {
		return err
	}
	return output(c, res, func(w io.Writer) {
		how := "copied"
		if res.Reflinked {
			how = "reflinked"
		}
		fmt.Fprintf(w, "%s\t%s (image %s, files %s)\n", res.Commit, c.String("branch"), res.Image, how)
	})
}

func cmdOSTreeSetUnified(ctx context.Context, c *cli.Context, st *store.Repository) error {
	args, err := interspersed(c, 1)
	if err != nil {
		return fmt.Errorf("%w\nusage: cfsctl ostree set-unified composefs|full [--policy POLICY] [--ostree-repo DIR]", err)
	}
	scope, err := ostreecompat.ParseScope(args[0])
	if err != nil {
		return err
	}
	p, err := ostreecompat.ParsePolicy(c.String("policy"))
	if err != nil {
		return err
	}
	repo, err := openOSTree(c, st, p != ostreecompat.PolicyDisabled)
	if err != nil {
		return err
	}
	defer repo.Close()
	res, err := ostreecompat.SetUnified(ctx, st, repo, ostreecompat.UnifyOptions{Scope: scope, Policy: p})
	if err != nil {
		return err
	}
	return output(c, res, func(w io.Writer) {
		for _, cm := range res.Commits {
			fmt.Fprintf(w, "%s\timage %s\n", cm.Commit, cm.Image)
		}
		if d := res.Dedupe; d != nil {
			fmt.Fprintf(w, "%d ostree files: %d already shared, %d now shared (%d bytes), %d not in the repository\n",
				d.Files, d.AlreadyShared, d.Deduped, d.Bytes, d.NotInStore)
		}
		fmt.Fprintf(w, "storage: %s (policy %s)\n", res.State, p)
	})
}

func cmdOSTreeStatus(c *cli.Context, st *store.Repository) error {
	if _, err := interspersed(c, 0); err != nil {
		return fmt.Errorf("%w\nusage: cfsctl ostree status [--ostree-repo DIR]", err)
	}
	repo, err := openOSTree(c, st, false)
	if err != nil {
		return err
	}
	defer repo.Close()
	s, err := ostreecompat.ReadStatus(st.Path(), repo)
	if err != nil {
		return err
	}
	return output(c, s, func(w io.Writer) {
		fmt.Fprintf(w, "storage     %s\nostree repo %s (%s, reflinks %v)\n", s.State, s.OSTreeRepo, s.Filesystem, s.ReflinksSupported)
		if s.Marker != nil {
			fmt.Fprintf(w, "policy      %s (scope %s)\n", s.Marker.Unified, s.Marker.Scope)
		}
		if s.Problem != "" {
			fmt.Fprintf(w, "problem     %s\n", s.Problem)
		}
	})
}

func cmdOSTreeFsck(ctx context.Context, c *cli.Context, st *store.Repository) error {
	if _, err := interspersed(c, 0); err != nil {
		return fmt.Errorf("%w\nusage: cfsctl ostree fsck [--json] [--repair] [--deep] [--policy POLICY] [--ostree-repo DIR]", err)
	}
	p, err := policy(c, st)
	if err != nil {
		return err
	}
	repo, err := openOSTree(c, st, false)
	if err != nil {
		return err
	}
	defer repo.Close()
	rep, err := ostreecompat.Fsck(ctx, st, repo, ostreecompat.FsckOptions{Deep: c.Bool("deep"), Repair: c.Bool("repair"), Policy: p})
	if err != nil {
		return err
	}
	if jsonWanted(c) {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Printf("storage %s, %d tagged images, %d refs to synthesized commits\n", rep.Binding, len(rep.Images), len(rep.Refs))
		for _, pr := range rep.Problems {
			fmt.Println(pr)
		}
		for _, im := range rep.Images {
			if im.Problem != "" {
				fmt.Printf("image %s (%s): %s%s\n", im.Image, im.Name, im.Problem, repairedNote(im.Repaired))
			}
		}
		for _, r := range rep.Refs {
			if r.Problem != "" {
				fmt.Printf("ref %s (commit %s, image %s): %s%s\n", r.Ref, r.Commit, r.Image, r.Problem, repairedNote(r.Repaired))
			}
		}
	}
	if !rep.OK {
		return errors.New("ostree fsck: problems found")
	}
	return nil
}

func repairedNote(repaired bool) string {
	if repaired {
		return " (repaired)"
	}
	return ""
}

// interspersed returns the command's n positional arguments, parsing the
// flags that follow them (cfsctl ostree commit IMAGE --branch REF), where
// urfave/cli stops parsing, and checks the required flags are set.
func interspersed(c *cli.Context, n int, required ...string) ([]string, error) {
	all := c.Args().Slice()
	var pos []string
	for i := 0; i < len(all); i++ {
		a := all[i]
		if a == "--" {
			pos = append(pos, all[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := lookupFlag(c.Command.Flags, name)
		if f == nil {
			return nil, fmt.Errorf("flag provided but not defined: %s", a)
		}
		if _, ok := f.(*cli.BoolFlag); ok && !hasVal {
			val = "true"
		} else if !hasVal {
			if i+1 == len(all) {
				return nil, fmt.Errorf("flag needs an argument: %s", a)
			}
			i++
			val = all[i]
		}
		if err := c.Set(f.Names()[0], val); err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
	}
	if len(pos) != n {
		return nil, fmt.Errorf("%d arguments, want %d", len(pos), n)
	}
	for _, r := range required {
		if !c.IsSet(r) {
			return nil, fmt.Errorf("required flag --%s not set", r)
		}
	}
	return pos, nil
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// jsonWanted reports whether --json was given to this command or to
// cfsctl itself.
func jsonWanted(c *cli.Context) bool {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet("json") && ctx.Bool("json") {
			return true
		}
	}
	return false
}

func cmdOSTreeDeploy(ctx context.Context, c *cli.Context, st *store.Repository) error {
	args, err := interspersed(c, 1, "sysroot", "stateroot")
	if err != nil {
		return fmt.Errorf("%w\nusage: cfsctl ostree deploy IMAGE --sysroot DIR --stateroot NAME [--karg ARG]", err)
	}
	p, err := policy(c, st)
	if err != nil {
		return err
	}
	d, err := ostreecompat.Deploy(ctx, st, args[0], c.String("sysroot"), ostreecompat.DeployOptions{
		Stateroot: c.String("stateroot"), Branch: c.String("branch"), Policy: p,
		Kargs: c.StringSlice("karg"), Retain: c.Bool("retain"),
	})
	if err != nil {
		return err
	}
	return output(c, d, func(w io.Writer) {
		fmt.Fprintf(w, "deployed %s as %s\nboot entry %s: ostree=%s\n", d.Image, d.Path, d.Entry, d.Bootlink)
	})
}
