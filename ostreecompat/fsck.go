package ostreecompat

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/store"
)

// FsckOptions configure Fsck.
type FsckOptions struct {
	// Deep checks each image's commit against the image itself
	// (VerifySynthesized: the store objects are read and hashed again)
	// rather than by the source the commit records.
	Deep bool
	// Repair synthesizes (again) the commit of every tagged image whose
	// commit is missing or wrong, and removes the image refs (ImageRef)
	// of images gone from the store; their commits stay for whatever
	// else references them (a deployment, a branch) until `ostree prune`.
	Repair bool
	// Policy is the unified-storage policy of repairs.
	Policy Policy
}

// FsckImage is what Fsck found for an image the store keeps by a name.
type FsckImage struct {
	Name   string `json:"name"`
	Image  string `json:"image"`
	Commit string `json:"commit,omitempty"`
	// CommitPresent: ImageRef names a commit the repository has.
	CommitPresent bool `json:"ostreeCommitPresent"`
	// CommitSynthesized: the commit was synthesized from the image.
	CommitSynthesized bool   `json:"ostreeCommitSynthesized"`
	Problem           string `json:"problem,omitempty"`
	Repaired          bool   `json:"repaired,omitempty"`
}

// FsckRef is what Fsck found for a ref of the ostree repository naming a
// synthesized commit.
type FsckRef struct {
	Ref    string `json:"ref"`
	Commit string `json:"commit"`
	// Image is the store image the commit was synthesized from, and
	// InStore says whether the store still has it.
	Image    string `json:"image"`
	InStore  bool   `json:"inComposefs"`
	Problem  string `json:"problem,omitempty"`
	Repaired bool   `json:"repaired,omitempty"`
}

// FsckReport is the result of Fsck; it serialises as bootc's fsck images
// report does where the two overlap.
type FsckReport struct {
	Binding           State        `json:"binding"`
	Policy            *Policy      `json:"policy,omitempty"`
	ReflinksSupported bool         `json:"reflinksSupported"`
	Images            []*FsckImage `json:"images"`
	Refs              []*FsckRef   `json:"refs"`
	// Problems are those of the markers.
	Problems []string `json:"problems,omitempty"`
	OK       bool     `json:"ok"`
}

// Fsck checks that the store and the ostree repository agree: every image
// the store keeps by a name (TaggedImages) has its commit (ImageRef names a
// commit of the repository synthesized from that image), every ref of the
// repository (branches and deployments included) that names a synthesized
// commit names one whose image the store still has, and the two markers
// agree. It reads metadata (and, with Deep, the store's images and objects):
// the content of ostree objects is `ostree fsck`'s business, the store's
// `cfsctl fsck`'s. An image gone from the store while a deployment still
// uses its commit is a problem Repair cannot solve: the deployment boots,
// but its files are no longer shared; pulling the image again restores it.
func Fsck(ctx context.Context, st *store.Repository, repo *ostree.Repo, opts FsckOptions) (*FsckReport, error) {
	status, err := ReadStatus(st.Path(), repo)
	if err != nil {
		return nil, err
	}
	rep := &FsckReport{Binding: status.State, ReflinksSupported: status.ReflinksSupported, OK: true}
	if status.Marker != nil {
		rep.Policy = &status.Marker.Unified
	}
	if status.Problem != "" {
		rep.Problems = append(rep.Problems, status.Problem)
		rep.OK = false
	}
	images, err := TaggedImages(st)
	if err != nil {
		return nil, err
	}
	for _, img := range images {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fi := checkImageCommit(ctx, st, repo, img, opts.Deep)
		if fi.Problem != "" && opts.Repair {
			if c, err := Commit(ctx, st, repo, img.Name, CommitOptions{Policy: opts.Policy}); err != nil {
				fi.Problem += "; repair failed: " + err.Error()
			} else {
				fi.Commit, fi.CommitPresent, fi.CommitSynthesized, fi.Repaired = c.Commit, true, true, true
			}
		}
		rep.OK = rep.OK && (fi.Problem == "" || fi.Repaired)
		rep.Images = append(rep.Images, fi)
	}
	refs, err := repo.Refs()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	inStore := map[string]bool{}
	for _, name := range names {
		fr, err := checkRef(st, repo, name, refs[name], inStore)
		if err != nil {
			return nil, err
		}
		if fr == nil {
			continue
		}
		if fr.Problem != "" && opts.Repair && fr.Ref == ImageRef(fr.Image) && !fr.InStore {
			if err := repo.DeleteRef(fr.Ref); err != nil {
				fr.Problem += "; repair failed: " + err.Error()
			} else {
				fr.Repaired = true
			}
		}
		rep.OK = rep.OK && (fr.Problem == "" || fr.Repaired)
		rep.Refs = append(rep.Refs, fr)
	}
	return rep, nil
}

func checkImageCommit(ctx context.Context, st *store.Repository, repo *ostree.Repo, img TaggedImage, deep bool) *FsckImage {
	fi := &FsckImage{Name: img.Name, Image: img.Image}
	c, err := repo.ResolveRef(ImageRef(img.Image))
	if err != nil {
		fi.Problem = fmt.Sprintf("no commit: %v", err)
		return fi
	}
	fi.Commit = c
	cm, err := repo.ReadCommit(c)
	if err != nil {
		fi.Problem = fmt.Sprintf("commit %s: %v", c, err)
		return fi
	}
	fi.CommitPresent = true
	if from := SynthesizedFrom(cm); from != img.Image {
		fi.Problem = fmt.Sprintf("commit %s was synthesized from %q, not from this image", c, from)
		return fi
	}
	if deep {
		if err := VerifySynthesized(ctx, st, img.Image, repo, c); err != nil {
			fi.Problem = fmt.Sprintf("commit %s is not the image's: %v", c, err)
			return fi
		}
	}
	fi.CommitSynthesized = true
	return fi
}

// checkRef checks the ref name, which names commit: nil when the commit is
// not a synthesized one. inStore caches which images the store has.
func checkRef(st *store.Repository, repo *ostree.Repo, name, commit string, inStore map[string]bool) (*FsckRef, error) {
	cm, err := repo.ReadCommit(commit)
	if err != nil {
		if strings.HasPrefix(name, ImageRef("")) {
			return &FsckRef{Ref: name, Commit: commit, Image: strings.TrimPrefix(name, ImageRef("")), Problem: err.Error()}, nil
		}
		// A ref to a missing commit is `ostree fsck`'s to report.
		return nil, nil
	}
	from := SynthesizedFrom(cm)
	if from == "" {
		return nil, nil
	}
	fr := &FsckRef{Ref: name, Commit: commit, Image: from}
	has, ok := inStore[from]
	if !ok {
		f, _, err := st.OpenImage(from)
		switch {
		case err == nil:
			f.Close()
			has = true
		case errors.Is(err, store.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
		default:
			return nil, err
		}
		inStore[from] = has
	}
	fr.InStore = has
	switch {
	case !has:
		fr.Problem = "the composefs repository no longer has the image this commit was synthesized from"
	case strings.HasPrefix(name, ImageRef("")) && name != ImageRef(from):
		fr.Problem = fmt.Sprintf("the image ref names a commit synthesized from %s", from)
	}
	return fr, nil
}
