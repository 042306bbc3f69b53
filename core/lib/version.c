/* version.c - the version and git revision the Makefile passes in. */
#include "lib/version.h"

#ifndef POLARIS_VERSION
#define POLARIS_VERSION "0.0.0"
#endif
#ifndef POLARIS_GIT_REV
#define POLARIS_GIT_REV "unknown"
#endif

const char polaris_version[] = POLARIS_VERSION;
const char polaris_git_rev[] = POLARIS_GIT_REV;
