package score

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include "threads.h"
*/
import "C"

// SetThreads sets how many threads OpenCV may use for one call (gocv v0.31
// has no binding for cv::setNumThreads). The worker uses 1: it scores one
// photo at a time on a robot whose other cores have work of their own, and
// the figures in TARGETS.md are measured on one core.
func SetThreads(n int) { C.aibo_set_num_threads(C.int(n)) }

// Threads reports OpenCV's current thread count.
func Threads() int { return int(C.aibo_get_num_threads()) }
