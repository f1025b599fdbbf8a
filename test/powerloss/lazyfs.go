// Package powerloss proves the daemon's crash safety under power loss:
// LazyFS (below) is a FUSE pass-through file system that keeps every byte
// written to a file in memory until that file is fsynced, counts each
// write and sync boundary, and at a chosen one "loses power": the daemon
// is killed, nothing more reaches the disk, and whatever was not synced is
// gone. The harness (powerloss_test.go) restarts the daemon on what is
// left and checks the invariants of issue 15.
//
// It is the same model as Jepsen's LazyFS (github.com/dsrhaslab/lazyfs),
// written in Go over go-fuse because only Debian packages and Go modules
// can be fetched here. Data written and not fsynced is lost, always (the
// worst case a power cut allows). Name operations (create, rename, unlink,
// mkdir, truncate) reach the backing directory at once, as if their
// directory had been synced: a weaker adversary than a real disk for them,
// said so in the README.
package powerloss

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

const pageSize = 4096

// LazyFS is one mount of the lazy file system over a backing directory.
type LazyFS struct {
	backing string
	server  *fuse.Server

	// CrashAt is the boundary (1-based, counting writes, syncs and name
	// operations) before which power is lost; 0 never.
	CrashAt int64
	// OnCrash runs once, when power is lost, before the mount goes (the
	// harness kills the daemon there).
	OnCrash func(op string)

	ops     atomic.Int64
	crashed atomic.Bool
	crashMu sync.Once

	mu    sync.Mutex
	dirty map[uint64]*overlay // by backing inode
	trace []string            // boundary names, for the report
}

// overlay is a file's data written and not yet synced.
type overlay struct {
	pages map[int64][]byte // page index -> pageSize bytes
	size  int64            // the file's size as the writer sees it
}

// Mount mounts LazyFS over backing at dir.
func Mount(backing, dir string, crashAt int64, onCrash func(op string)) (*LazyFS, error) {
	lz := &LazyFS{backing: backing, CrashAt: crashAt, OnCrash: onCrash, dirty: map[uint64]*overlay{}}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, err
	}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	//lint:ignore SA1019 NewNode makes every node ours, including the ones LoopbackNode creates; WrapChild would have to copy an Inode.
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, lz: lz}
	}
	rootNode := &node{LoopbackNode: fs.LoopbackNode{RootData: root}, lz: lz}
	root.RootNode = rootNode
	zero := time.Duration(0)
	srv, err := fs.Mount(dir, rootNode, &fs.Options{
		AttrTimeout:     &zero,
		EntryTimeout:    &zero,
		NegativeTimeout: &zero,
		MountOptions:    fuse.MountOptions{DirectMount: true, FsName: "lazyfs", Name: "lazyfs", DisableXAttrs: true},
	})
	if err != nil {
		return nil, err
	}
	lz.server = srv
	return lz, nil
}

// Unmount ends the mount; unsynced data is dropped, as power loss would.
func (lz *LazyFS) Unmount() error {
	lz.crashed.Store(true)
	err := lz.server.Unmount()
	lz.mu.Lock()
	lz.dirty = map[uint64]*overlay{}
	lz.mu.Unlock()
	return err
}

// Ops is the number of boundaries so far.
func (lz *LazyFS) Ops() int64 { return lz.ops.Load() }

// Crashed reports whether power was lost.
func (lz *LazyFS) Crashed() bool { return lz.crashed.Load() }

// Trace returns the boundaries seen, in order (name operations and syncs
// with their file, writes as "write <file>").
func (lz *LazyFS) Trace() []string {
	lz.mu.Lock()
	defer lz.mu.Unlock()
	return append([]string(nil), lz.trace...)
}

// boundary counts one operation that could be the last before power goes,
// and loses power when it is the chosen one. It returns EIO once power is
// lost: nothing reaches the disk after that.
func (lz *LazyFS) boundary(op string) syscall.Errno {
	if lz.crashed.Load() {
		return syscall.EIO
	}
	n := lz.ops.Add(1)
	lz.mu.Lock()
	if len(lz.trace) < 100000 {
		lz.trace = append(lz.trace, op)
	}
	lz.mu.Unlock()
	if lz.CrashAt > 0 && n >= lz.CrashAt {
		lz.crashMu.Do(func() {
			lz.crashed.Store(true)
			if lz.OnCrash != nil {
				lz.OnCrash(op)
			}
		})
		return syscall.EIO
	}
	return 0
}

// forget drops the overlay of a file that is going away.
func (lz *LazyFS) forget(path string) {
	var st syscall.Stat_t
	if syscall.Lstat(path, &st) != nil || st.Nlink > 1 {
		return
	}
	lz.mu.Lock()
	delete(lz.dirty, st.Ino)
	lz.mu.Unlock()
}

type node struct {
	fs.LoopbackNode
	lz *LazyFS
}

func (n *node) fullPath() string { return filepath.Join(n.RootData.Path, n.Path(nil)) }

var (
	_ fs.NodeStatxer   = (*node)(nil)
	_ fs.NodeOpener    = (*node)(nil)
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeGetattrer = (*node)(nil)
)

// Statx, Tmpfile and CopyFileRange are refused so the kernel falls back
// to the operations the overlay sees.
func (n *node) Statx(context.Context, fs.FileHandle, uint32, uint32, *fuse.StatxOut) syscall.Errno {
	return syscall.ENOSYS
}

func (n *node) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

func (n *node) CopyFileRange(context.Context, fs.FileHandle, uint64, *fs.Inode, fs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.lz.boundary("mkdir " + filepath.Join(n.Path(nil), name)); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if e := n.lz.boundary("rmdir " + filepath.Join(n.Path(nil), name)); e != 0 {
		return e
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := n.lz.boundary("unlink " + filepath.Join(n.Path(nil), name)); e != 0 {
		return e
	}
	n.lz.forget(filepath.Join(n.fullPath(), name))
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if e := n.lz.boundary("rename " + filepath.Join(n.Path(nil), name) + " " + filepath.Join(np.Path(nil), newName)); e != 0 {
		return e
	}
	n.lz.forget(filepath.Join(np.fullPath(), newName))
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if e := n.lz.boundary("create " + filepath.Join(n.Path(nil), name)); e != 0 {
		return nil, nil, 0, e
	}
	p := filepath.Join(n.fullPath(), name)
	flags &^= syscall.O_APPEND
	open := int(flags) | os.O_CREATE
	if open&syscall.O_ACCMODE == syscall.O_WRONLY {
		open = open&^syscall.O_ACCMODE | syscall.O_RDWR // partial pages need reading
	}
	f, err := os.OpenFile(p, open, os.FileMode(mode))
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, nil, 0, fs.ToErrno(err)
	}
	if flags&syscall.O_TRUNC != 0 {
		n.lz.mu.Lock()
		delete(n.lz.dirty, st.Ino)
		n.lz.mu.Unlock()
	}
	ch := n.NewInode(ctx, &node{LoopbackNode: fs.LoopbackNode{RootData: n.RootData}, lz: n.lz},
		fs.StableAttr{Mode: st.Mode, Ino: st.Ino, Gen: 1})
	out.FromStat(&st)
	return ch, &file{f: f, ino: st.Ino, lz: n.lz, name: filepath.Join(n.Path(nil), name)}, 0, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC
	acc := int(flags) & syscall.O_ACCMODE
	open := int(flags)
	if acc == syscall.O_WRONLY {
		open = open&^syscall.O_ACCMODE | syscall.O_RDWR // partial pages need reading
	}
	if flags&syscall.O_TRUNC != 0 {
		if e := n.lz.boundary("truncate " + n.Path(nil)); e != 0 {
			return nil, 0, e
		}
	}
	f, err := os.OpenFile(n.fullPath(), open, 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, 0, fs.ToErrno(err)
	}
	if flags&syscall.O_TRUNC != 0 {
		n.lz.mu.Lock()
		delete(n.lz.dirty, st.Ino)
		n.lz.mu.Unlock()
	}
	return &file{f: f, ino: st.Ino, lz: n.lz, name: n.Path(nil)}, 0, 0
}

// Getattr reports the size the writer sees (with unsynced data).
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Lstat(n.fullPath(), &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	n.lz.mu.Lock()
	if o, ok := n.lz.dirty[st.Ino]; ok {
		out.Size = uint64(o.size)
	}
	n.lz.mu.Unlock()
	return 0
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if e := n.lz.boundary("truncate " + n.Path(nil)); e != 0 {
			return e
		}
		if err := n.lz.truncate(n.fullPath(), int64(sz)); err != nil {
			return fs.ToErrno(err)
		}
	}
	p := n.fullPath()
	if m, ok := in.GetMode(); ok {
		if err := syscall.Chmod(p, m); err != nil {
			return fs.ToErrno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		su, sg := -1, -1
		if uok {
			su = int(uid)
		}
		if gok {
			sg = int(gid)
		}
		if err := os.Lchown(p, su, sg); err != nil {
			return fs.ToErrno(err)
		}
	}
	if mt, ok := in.GetMTime(); ok {
		at := mt
		if a, ok := in.GetATime(); ok {
			at = a
		}
		_ = os.Chtimes(p, at, mt)
	}
	return n.Getattr(ctx, fh, out)
}

// truncate applies a size change to the backing file at once (a name
// operation here) and to the overlay.
func (lz *LazyFS) truncate(path string, size int64) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return err
	}
	if err := os.Truncate(path, size); err != nil {
		return err
	}
	lz.mu.Lock()
	defer lz.mu.Unlock()
	if o, ok := lz.dirty[st.Ino]; ok {
		for idx := range o.pages {
			if idx*pageSize >= size {
				delete(o.pages, idx)
			} else if end := (idx + 1) * pageSize; end > size {
				clear(o.pages[idx][size-idx*pageSize:])
			}
		}
		o.size = size
	}
	return nil
}

// file is an open file: reads see unsynced writes, writes stay in memory
// until Fsync.
type file struct {
	f    *os.File
	ino  uint64
	name string
	lz   *LazyFS
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileSetattrer = (*file)(nil)
)

func (f *file) backingSize() int64 {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.f.Fd()), &st) != nil {
		return 0
	}
	return st.Size
}

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if f.lz.crashed.Load() {
		return nil, syscall.EIO
	}
	n, err := f.f.ReadAt(buf, off)
	if err != nil && n == 0 && off < f.backingSize() {
		return nil, fs.ToErrno(err)
	}
	clear(buf[n:])
	f.lz.mu.Lock()
	defer f.lz.mu.Unlock()
	o, ok := f.lz.dirty[f.ino]
	if !ok {
		return fuse.ReadResultData(buf[:n]), 0
	}
	size := o.size
	end := min(off+int64(len(buf)), size)
	if end <= off {
		return fuse.ReadResultData(nil), 0
	}
	for idx := off / pageSize; idx*pageSize < end; idx++ {
		page, ok := o.pages[idx]
		if !ok {
			continue
		}
		pStart := idx * pageSize
		from := max(off, pStart)
		to := min(end, pStart+pageSize)
		copy(buf[from-off:to-off], page[from-pStart:to-pStart])
	}
	return fuse.ReadResultData(buf[:end-off]), 0
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if e := f.lz.boundary("write " + f.name); e != 0 {
		return 0, e
	}
	f.lz.mu.Lock()
	defer f.lz.mu.Unlock()
	o, ok := f.lz.dirty[f.ino]
	if !ok {
		o = &overlay{pages: map[int64][]byte{}, size: f.backingSize()}
		f.lz.dirty[f.ino] = o
	}
	end := off + int64(len(data))
	for idx := off / pageSize; idx*pageSize < end; idx++ {
		page, ok := o.pages[idx]
		if !ok {
			page = make([]byte, pageSize)
			if idx*pageSize < o.size { // the part of the page that exists
				f.f.ReadAt(page[:min(pageSize, o.size-idx*pageSize)], idx*pageSize)
			}
			o.pages[idx] = page
		}
		pStart := idx * pageSize
		from := max(off, pStart)
		to := min(end, pStart+pageSize)
		copy(page[from-pStart:to-pStart], data[from-off:to-off])
	}
	o.size = max(o.size, end)
	return uint32(len(data)), 0
}

// Fsync makes the file's unsynced data durable: written to the backing
// file, then synced.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if e := f.lz.boundary("fsync " + f.name); e != 0 {
		return e
	}
	f.lz.mu.Lock()
	o, ok := f.lz.dirty[f.ino]
	delete(f.lz.dirty, f.ino)
	f.lz.mu.Unlock()
	if ok {
		for idx, page := range o.pages {
			start := idx * pageSize
			if start >= o.size {
				continue
			}
			if _, err := f.f.WriteAt(page[:min(pageSize, o.size-start)], start); err != nil {
				return fs.ToErrno(err)
			}
		}
		if f.backingSize() < o.size {
			if err := f.f.Truncate(o.size); err != nil {
				return fs.ToErrno(err)
			}
		}
	}
	return fs.ToErrno(f.f.Sync())
}

// Flush (close) does not sync: a closed file's data is as volatile as an
// open one's.
func (f *file) Flush(ctx context.Context) syscall.Errno { return 0 }

func (f *file) Release(ctx context.Context) syscall.Errno { return fs.ToErrno(f.f.Close()) }

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.f.Fd()), &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	f.lz.mu.Lock()
	if o, ok := f.lz.dirty[f.ino]; ok {
		out.Size = uint64(o.size)
	}
	f.lz.mu.Unlock()
	return 0
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if e := f.lz.boundary("truncate " + f.name); e != 0 {
			return e
		}
		if err := f.lz.truncate(fdPath(f.f), int64(sz)); err != nil {
			return fs.ToErrno(err)
		}
	}
	if m, ok := in.GetMode(); ok {
		if err := f.f.Chmod(os.FileMode(m)); err != nil {
			return fs.ToErrno(err)
		}
	}
	return f.Getattr(ctx, out)
}

func fdPath(f *os.File) string {
	p, err := os.Readlink("/proc/self/fd/" + itoa(int(f.Fd())))
	if err != nil {
		return f.Name()
	}
	return p
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
