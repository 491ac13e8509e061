/* kern_loops.h - kern_bench's int8 instruction-sequence loops (kern_loops.c). */
#ifndef PV_KERN_LOOPS_H
#define PV_KERN_LOOPS_H

#define KERN_LOOPS 4
extern const char *const kern_loop_names[KERN_LOOPS];

int kern_loops_supported(void);                             /* AVX2 and FMA */
void *kern_loops_data_new(void);                            /* the loops' inputs (free()); NULL: out of memory */
double kern_loop_run(int v, const void *data, float out[64]); /* loop v once: its multiply-adds */

#endif
