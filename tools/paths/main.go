// Command paths prints the installed paths of internal/paths as shell
// assignments, for the scripts that cannot import Go:
//
//	eval "$(go run ./tools/paths)"   # AIBO_DAEMON=/usr/sbin/aibo-privacyd ...
//
// packaging/build-deb.sh lays the packages out with them, so the package
// and the daemon's defaults cannot name different places.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
)

func main() {
	all := paths.All()
	all["PACKAGE"] = paths.Package
	all["MODELS_PACKAGE"] = paths.ModelsPackage
	all["USER"] = paths.User
	all["CAMERA_GROUP"] = paths.CameraGroup
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := all[k]
		if strings.ContainsAny(v, "'\n") {
			fmt.Fprintf(os.Stderr, "paths: %s=%q cannot be quoted for the shell\n", k, v)
			os.Exit(1)
		}
		fmt.Printf("AIBO_%s='%s'\n", k, v)
	}
}
