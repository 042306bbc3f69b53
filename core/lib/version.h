/* version.h - which polaris this is: every program links one version.c,
 * the only file built with the version and git revision (a commit rebuilds
 * it alone). */
#ifndef POLARIS_VERSION_H
#define POLARIS_VERSION_H

extern const char polaris_version[];
extern const char polaris_git_rev[];

#endif
