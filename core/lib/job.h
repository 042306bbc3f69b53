/* job.h - a unit of work a thread runs: the worker pool runs them without
 * knowing what they are (a plugin's mailbox, its command lane). Embedded
 * in its owner, which run() finds with container_of-style arithmetic. */
#ifndef POLARIS_JOB_H
#define POLARIS_JOB_H

struct job {
    struct job *next;             /* the pool's queue link */
    void (*run)(struct job *);
};

#endif
