package template

import "unsafe"

// i8 views bytes as int8 without copying.
func i8(b []byte) []int8 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(&b[0])), len(b))
}
