// Package install is make install-test: the Debian packages built from
// this tree, installed with apt into a fresh Debian 12 root made by
// debootstrap, the installed daemon started the way its unit starts it,
// the whole story played through the contract, and the packages purged.
// scripts/install-test.sh prepares the root and the packages; the test
// (build tag installtest, so make test never runs it) needs root.
package install
