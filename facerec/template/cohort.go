package template

import (
	_ "embed"
	"fmt"
)

// cohortBlob holds the canonical vectors (int8, Dims each) of the cohort
// faces listed in cohortFiles, written by internal/genmodel.
//
//go:embed cohort.bin
var cohortBlob []byte

var cohort = func() []int8 {
	if len(cohortBlob) == 0 || len(cohortBlob)%Dims != 0 || len(cohortBlob)/Dims != len(cohortFiles) {
		panic(fmt.Sprintf("template: cohort.bin has %d bytes for %d faces of %d: regenerate with go generate", len(cohortBlob), len(cohortFiles), Dims))
	}
	return i8(cohortBlob)
}()
