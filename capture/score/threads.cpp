#include <opencv2/core.hpp>
#include "threads.h"

void aibo_set_num_threads(int n) { cv::setNumThreads(n); }
int aibo_get_num_threads(void) { return cv::getNumThreads(); }
