// Package semver parses and orders semantic versions (MAJOR.MINOR.PATCH with
// an optional pre-release). It knows nothing about firmware or policy.
package semver

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a parsed semantic version. Build metadata is dropped: it does
// not take part in ordering.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 []string
	raw                 string
}

// Parse reads "1.2.3", "1.2.3-rc.1" or "1.2.3+build".
func Parse(s string) (Version, error) {
	v := Version{raw: s}
	core := s
	if i := strings.IndexByte(core, '+'); i >= 0 {
		core = core[:i]
	}
	if i := strings.IndexByte(core, '-'); i >= 0 {
		pre := core[i+1:]
		core = core[:i]
		if pre == "" {
			return Version{}, fmt.Errorf("version %q: empty pre-release", s)
		}
		v.Pre = strings.Split(pre, ".")
		for _, p := range v.Pre {
			if p == "" {
				return Version{}, fmt.Errorf("version %q: empty pre-release field", s)
			}
		}
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", s)
	}
	nums := make([]uint64, 3)
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return Version{}, fmt.Errorf("version %q: bad number %q", s, p)
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("version %q: bad number %q", s, p)
		}
		nums[i] = n
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	return v, nil
}

// String returns the text the version was parsed from.
func (v Version) String() string { return v.raw }

// Compare returns -1, 0 or +1 as a is below, equal to or above b.
func Compare(a, b Version) int {
	for _, d := range [][2]uint64{{a.Major, b.Major}, {a.Minor, b.Minor}, {a.Patch, b.Patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	// A version without pre-release ranks above one with.
	switch {
	case len(a.Pre) == 0 && len(b.Pre) == 0:
		return 0
	case len(a.Pre) == 0:
		return 1
	case len(b.Pre) == 0:
		return -1
	}
	for i := 0; i < len(a.Pre) && i < len(b.Pre); i++ {
		if c := comparePre(a.Pre[i], b.Pre[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(a.Pre) < len(b.Pre):
		return -1
	case len(a.Pre) > len(b.Pre):
		return 1
	}
	return 0
}

func comparePre(x, y string) int {
	xn, xerr := strconv.ParseUint(x, 10, 64)
	yn, yerr := strconv.ParseUint(y, 10, 64)
	switch {
	case xerr == nil && yerr == nil:
		if xn < yn {
			return -1
		} else if xn > yn {
			return 1
		}
		return 0
	case xerr == nil:
		return -1 // numeric identifiers rank below alphanumeric ones
	case yerr == nil:
		return 1
	}
	return strings.Compare(x, y)
}
