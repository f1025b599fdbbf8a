//go:build !amd64

package escape

// compat has no attempts here: an arm64 process cannot make an AArch32
// call (the filter kills one all the same: the architecture check).
func compat() []Attempt { return nil }
