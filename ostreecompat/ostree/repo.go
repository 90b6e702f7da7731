package ostree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Mode is a repository mode: how content objects hold their metadata.
type Mode int

// The modes this package reads and writes.
const (
	// ModeBare keeps metadata on the object inodes: owner, permissions,
	// xattrs. Writing needs root (CAP_CHOWN, CAP_FOWNER, and CAP_SYS_ADMIN
	// for trusted.* xattrs). System repositories (/ostree/repo) are bare.
	ModeBare Mode = iota + 1
	// ModeBareUser keeps metadata in the user.ostreemeta xattr, so any
	// user can write one on a filesystem with user xattrs.
	ModeBareUser
)

// String returns the mode's name in the config file.
func (m Mode) String() string {
	switch m {
	case ModeBare:
		return "bare"
	case ModeBareUser:
		return "bare-user"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode returns the mode named s in a config file.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "bare":
		return ModeBare, nil
	case "bare-user":
		return ModeBareUser, nil
	}
	return 0, fmt.Errorf("ostree: repository mode %q not supported (only bare and bare-user)", s)
}

// ErrNotFound is wrapped when an object or ref does not exist.
var ErrNotFound = fs.ErrNotExist

// Repo is an open repository. Its methods may be called concurrently.
type Repo struct {
	path string
	mode Mode
	dir  *os.File // the repository directory
	lock *os.File // .lock, share-locked while open

	cfgMu sync.Mutex

	// objDirs records the objects/XX directories known to exist.
	objDirs [256]atomic.Bool
}

// The skeleton libostree creates, objects/ last: its presence marks a
// complete repository.
var repoDirs = []string{"tmp", "extensions", "state", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "objects"}

const (
	configName = "config"
	lockName   = ".lock"
	userMeta   = "user.ostreemeta"
)

// Create creates a repository of the given mode at path (and missing
// parents), as `ostree init --mode=MODE` does, and opens it. An existing
// repository of the same mode is just opened; one of another mode is an
// error. A bare-user repository needs user xattrs on the filesystem: Create
// checks that they work.
func Create(path string, mode Mode) (*Repo, error) {
	if mode != ModeBare && mode != ModeBareUser {
		return nil, fmt.Errorf("ostree: create %s: unsupported mode %v", path, mode)
	}
	if _, err := os.Stat(filepath.Join(path, "objects")); err == nil {
		r, err := Open(path)
		if err != nil {
			return nil, err
		}
		if r.mode != mode {
			r.Close()
			return nil, fmt.Errorf("ostree: create %s: a %v repository exists there", path, r.mode)
		}
		return r, nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("ostree: create %s: %w", path, err)
	}
	cfg := fmt.Sprintf("[core]\nrepo_version=1\nmode=%v\n", mode)
	if err := writeFileAtomic(path, configName, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("ostree: create %s: %w", path, err)
	}
	for _, d := range repoDirs {
		if d == "objects" && mode == ModeBareUser {
			if err := checkUserXattrs(filepath.Join(path, "tmp")); err != nil {
				return nil, fmt.Errorf("ostree: create %s: bare-user mode needs user xattrs: %w", path, err)
			}
		}
		if err := os.Mkdir(filepath.Join(path, d), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("ostree: create %s: %w", path, err)
		}
	}
	return Open(path)
}

// checkUserXattrs sets a user.ostreemeta xattr on a temporary file in dir.
func checkUserXattrs(dir string) error {
	f, err := os.CreateTemp(dir, "xattr-check-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return unix.Fsetxattr(int(f.Fd()), userMeta, []byte{0}, 0)
}

// Open opens the repository at path. Its config must name a supported mode
// and repo_version 1. It waits while another process (`ostree prune`) holds
// the repository lock exclusively.
func Open(path string) (*Repo, error) {
	data, err := os.ReadFile(filepath.Join(path, configName))
	if err != nil {
		return nil, fmt.Errorf("ostree: open %s: %w", path, err)
	}
	kf, err := parseKeyFile(string(data))
	if err != nil {
		return nil, fmt.Errorf("ostree: %s/%s: %w", path, configName, err)
	}
	if v, _ := kf.get("core", "repo_version"); v != "1" {
		return nil, fmt.Errorf("ostree: %s/%s: repo_version %q, want 1", path, configName, v)
	}
	ms, _ := kf.get("core", "mode")
	mode, err := ParseMode(ms)
	if err != nil {
		return nil, fmt.Errorf("%w (%s/%s)", err, path, configName)
	}
	if _, err := os.Stat(filepath.Join(path, "objects")); err != nil {
		return nil, fmt.Errorf("ostree: open %s: %w", path, err)
	}
	dir, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ostree: open %s: %w", path, err)
	}
	r := &Repo{path: path, mode: mode, dir: dir}
	if err := r.takeLock(); err != nil {
		dir.Close()
		return nil, fmt.Errorf("ostree: open %s: lock: %w", path, err)
	}
	return r, nil
}

// takeLock share-locks .lock as libostree's transactions do. A read-only
// repository without one is opened unlocked: nothing can be written there.
func (r *Repo) takeLock() error {
	fd, err := unix.Openat(r.dirfd(), lockName, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) {
		fd, err = unix.Openat(r.dirfd(), lockName, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
	}
	if err != nil {
		return err
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0}
	for {
		err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &lk)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return err
	}
	r.lock = os.NewFile(uintptr(fd), filepath.Join(r.path, lockName))
	return nil
}

// Close releases the repository and its lock.
func (r *Repo) Close() error {
	if r.lock != nil {
		r.lock.Close()
	}
	return r.dir.Close()
}

// Path returns the path the repository was opened with.
func (r *Repo) Path() string { return r.path }

// Mode returns the repository's mode.
func (r *Repo) Mode() Mode { return r.mode }

func (r *Repo) dirfd() int { return int(r.dir.Fd()) }

// ConfigValue returns the value of a key of the config file, read now.
func (r *Repo) ConfigValue(group, key string) (string, bool, error) {
	kf, err := r.readConfig()
	if err != nil {
		return "", false, err
	}
	v, ok := kf.get(group, key)
	return v, ok, nil
}

// SetConfigValue sets a key of the config file, replacing the file
// atomically and leaving its other lines as they are.
func (r *Repo) SetConfigValue(group, key, value string) error {
	if strings.ContainsAny(group, "[]\n") || group == "" || strings.ContainsAny(key, "=\n") ||
		strings.TrimSpace(key) != key || key == "" || strings.Contains(value, "\n") {
		return fmt.Errorf("ostree: %s: config [%s] %s=%q: %w", r.path, group, key, value, ErrInvalid)
	}
	if group == "core" && (key == "mode" || key == "repo_version") {
		return fmt.Errorf("ostree: %s: [core] %s cannot be changed", r.path, key)
	}
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	kf, err := r.readConfig()
	if err != nil {
		return err
	}
	kf.set(group, key, value)
	if err := writeFileAtomic(r.path, configName, []byte(kf.String()), 0o644); err != nil {
		return fmt.Errorf("ostree: %s: write config: %w", r.path, err)
	}
	return nil
}

func (r *Repo) readConfig() (*keyFile, error) {
	data, err := os.ReadFile(filepath.Join(r.path, configName))
	if err != nil {
		return nil, fmt.Errorf("ostree: %w", err)
	}
	kf, err := parseKeyFile(string(data))
	if err != nil {
		return nil, fmt.Errorf("ostree: %s/%s: %w", r.path, configName, err)
	}
	return kf, nil
}
