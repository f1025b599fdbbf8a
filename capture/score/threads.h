#ifndef AIBO_SCORE_THREADS_H
#define AIBO_SCORE_THREADS_H
#ifdef __cplusplus
extern "C" {
#endif
void aibo_set_num_threads(int n);
int aibo_get_num_threads(void);
#ifdef __cplusplus
}
#endif
#endif
