# polarisd - build, test, install.
#
#   make            build the daemon, polarisctl and the Lua test modules
#   make run        install deps if missing, build, run the daemon in the foreground
#   make test       install deps if missing, build, run every test; last line "N passed, N failed"
#   make asan       the whole suite against an AddressSanitizer + UBSan build
#   make install    honours PREFIX, DESTDIR, CC, CFLAGS, LDFLAGS, PKG_CONFIG
#   make deps       install build and test dependencies (Debian packages)
#   make lint       luacheck over all shipped Lua; the C layers have no loops
#   make fuzz       every libFuzzer target for SECONDS (default 10) each
#   make fresh-check  make test and make run in a fresh Debian root (needs root)

VERSION    := $(shell cat VERSION)
GIT_REV    := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR    ?= $(PREFIX)/share/polaris
LIBEXECDIR ?= $(PREFIX)/lib/polaris
SYSCONFDIR ?= /etc
MANDIR     ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
DESTDIR    ?=

CC         ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS     ?= -O2 -g
LDFLAGS    ?=
WERROR     ?= -Werror
BUILD      ?= build
SANFLAGS   ?=

LUA_PC     ?= lua5.4
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(LUA_PC) zlib libdeflate 2>/dev/null)
# libdeflate for CRC-32 on the event path: PCLMUL-accelerated, ~12 ns for a
# 256-byte payload where zlib 1.2.13's crc32() takes ~190 ns (the same CRC;
# spec/unit/c/test_plp_codec.c checks one against the other). zlib stays for gzip.
DEP_LIBS   := $(shell $(PKG_CONFIG) --libs zlib 2>/dev/null || echo -lz) \
              $(shell $(PKG_CONFIG) --libs libdeflate 2>/dev/null || echo -ldeflate) -lev -lsodium -lpthread
# polarisd allocates an envelope per event in one thread and frees it in
# another; glibc's malloc answers that with arena locks and fresh pages, jemalloc
# (Redis's choice, for the same reason) with per-thread caches: +20% events/s
# in make bench. Sanitizer builds leave malloc to the sanitizer (MALLOC_LIBS=).
MALLOC_LIBS ?= -ljemalloc
SECCOMP_LIBS := $(shell $(PKG_CONFIG) --libs libseccomp 2>/dev/null || echo -lseccomp)
LUA_LIBS   := $(shell $(PKG_CONFIG) --libs $(LUA_PC) 2>/dev/null || echo -llua5.4) -llua5.4-cjson

# -fno-plt: a call into a shared library (liblua's API above all, ~80 calls
# an event through a Lua strategy) goes through its GOT entry, not a PLT
# stub: ~1% of a strategy's instructions (callgrind), nothing on the plain path.
BASE_CFLAGS := -std=gnu11 -Wall -Wextra -Wno-format-truncation $(WERROR) -MMD -MP -D_GNU_SOURCE -Icore $(DEP_CFLAGS) \
               -fno-plt -DPOLARIS_DATADIR='"$(DATADIR)"' -DPOLARIS_LIBEXECDIR='"$(LIBEXECDIR)"'
# Only lib/version.c carries the version and git revision, so a commit
# rebuilds one file, not the tree.
VERSION_DEFS := -DPOLARIS_VERSION='"$(VERSION)"' -DPOLARIS_GIT_REV='"$(GIT_REV)"'
ALL_CFLAGS  := $(BASE_CFLAGS) $(SANFLAGS) $(CFLAGS)

# The C sources in layers, each using only those above it (tools/layers.lua
# checks it in `make lint`): lib (buffers, queues, logging, the OS), wire (the
# codecs and the event's JSON shape), runtime (the plugin runtime: one
# sandboxed lua_State per plugin, and its bindings), then its two homes:
# daemon (polarisd's four domains) and isolate (polaris-plugin-host).
LIB_SRCS := $(addprefix core/lib/,version.c buf.c rxbuf.c log.c stats.c sysinfo.c fs_beneath.c sd_notify.c \
              transport.c envelope.c envq.c targz.c block_cache.c) \
            $(addprefix core/wire/,json_scan.c gzip_codec.c lsp_codec.c plp_codec.c command_msg.c \
              event_json.c plugin_host_proto.c) \
            $(addprefix core/runtime/,lua_json.c lua_event.c lua_strmatch.c bind_json.c lua_pack.c plugin_trust.c) \
            core/daemon/config.c core/daemon/spool.c
# The plugin runtime: in polarisd, and again in polaris-plugin-host.
RUNTIME_SRCS := $(addprefix core/runtime/,sandbox.c plugin.c plugin_load.c bind_polaris.c bind_fs.c bind_sys.c driver_lua.S)
HOST_SRCS := $(addprefix core/isolate/,plugin_host_main.c plugin_host_home.c plugin_host_confine.c) \
             $(RUNTIME_SRCS)
DAEMON_SRCS := $(addprefix core/daemon/,ipc_server.c guest_link.c worker_pool.c core.c \
                 plugin_registry.c plugin_routing.c plugin_reload.c plugin_policy.c plugin_home.c \
                 shared_store.c plugin_host.c plugin_host_link.c plugin_wait.c exec_confine.c \
                 proc_monitor.c polarisd.c) \
               $(RUNTIME_SRCS)
UNIT_SRCS := $(wildcard spec/unit/c/*.c)

LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o)
DAEMON_OBJS := $(patsubst %,$(BUILD)/%.o,$(basename $(DAEMON_SRCS)))
HOST_OBJS   := $(patsubst %,$(BUILD)/%.o,$(basename $(HOST_SRCS)))
UNIT_OBJS   := $(UNIT_SRCS:%.c=$(BUILD)/%.o)
# Lua modules load into the system's lua5.4, so they are built without
# sanitizers (an ASan-built .so cannot load into an uninstrumented process).
PIC_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/pic/%.o)

LIBCORE  := $(BUILD)/libpolaris_core.a
LIBPIC   := $(BUILD)/pic/libpolaris_core_pic.a
SDK_SONAME := libpolaris_client.so.0
SDK_SO     := $(BUILD)/sdk/libpolaris_client.so.$(VERSION)
SDK_A      := $(BUILD)/sdk/libpolaris_client.a
SDK_SRCS   := sdk/polaris_client.c core/lib/buf.c core/wire/json_scan.c
SDK_OBJS   := $(SDK_SRCS:%.c=$(BUILD)/sdk/obj/%.o)
BINS     := $(BUILD)/polarisd $(BUILD)/polarisctl $(BUILD)/polaris-plugin-host
LUAMODS  := $(BUILD)/lua/polaris/codec.so $(BUILD)/lua/polaris/plugin_libs.so $(BUILD)/lua/ptest.so
UNIT_BIN := $(BUILD)/unit_tests

.PHONY: all deps run test asan bench install uninstall clean lint fuzz fresh-check
all: $(BINS) $(LUAMODS) $(UNIT_BIN) $(SDK_SO) $(SDK_A) $(BUILD)/sdk_probe $(BUILD)/sdk/report_event \
     $(BUILD)/original_app $(BUILD)/original_app_cxx \
     $(BUILD)/polaris-crasher $(BUILD)/polarisd-hooks

V ?= 0
ifeq ($(V),0)
Q := @
endif

# Objects depend on the flags they were built with: a different PREFIX,
# CFLAGS or compiler rebuilds them (the paths are compiled in).
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(CC) $(ALL_CFLAGS) $(BASE_CFLAGS) $(LDFLAGS)
$(shell mkdir -p $(BUILD); [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = '$(subst ','"'"',$(FLAGS_NOW))' ] || printf '%s' '$(subst ','"'"',$(FLAGS_NOW))' > $(FLAGS_STAMP))

VERSION_STAMP := $(BUILD)/.version
$(shell [ "$$(cat $(VERSION_STAMP) 2>/dev/null)" = '$(VERSION) $(GIT_REV)' ] || printf '%s' '$(VERSION) $(GIT_REV)' > $(VERSION_STAMP))
$(BUILD)/core/lib/version.o: ALL_CFLAGS += $(VERSION_DEFS)
$(BUILD)/core/lib/version.o: $(VERSION_STAMP)

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# the strategy driver, a Lua file built in (.incbin is not in -MMD's list)
$(BUILD)/%.o: %.S $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/core/runtime/driver_lua.o: lua/polaris/driver.lua

$(BUILD)/pic/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC(pic) $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -fPIC -c $< -o $@

# The SDK: only libc and pthreads; its copies of buf.c/json_scan.c stay
# hidden (-fvisibility=hidden plus an export map), so an app's own symbols
# never clash with ours.
$(BUILD)/sdk/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC(sdk) $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(SANFLAGS) $(CFLAGS) -Isdk/include -fPIC -fvisibility=hidden -c $< -o $@

$(SDK_SO): $(SDK_OBJS) sdk/polaris_client.map
	$(CC) -shared $(SANFLAGS) $(CFLAGS) $(LDFLAGS) -Wl,-soname,$(SDK_SONAME) \
	    -Wl,--version-script=sdk/polaris_client.map -o $@ $(SDK_OBJS) -lpthread
	ln -sf $(notdir $@) $(BUILD)/sdk/$(SDK_SONAME)
	ln -sf $(SDK_SONAME) $(BUILD)/sdk/libpolaris_client.so

$(SDK_A): $(SDK_OBJS)
	$(AR) rcs $@ $^

$(BUILD)/sdk_probe: spec/support/sdk_probe.c $(SDK_A)
	$(CC) $(BASE_CFLAGS) $(SANFLAGS) $(CFLAGS) -Isdk/include $(LDFLAGS) -o $@ $< $(SDK_A) -lpthread

# An app written against the original SDK header (DESIGN 6): it must build
# with the strictest flags, as C99 and as C++, and link unchanged.
ORIG_APP_FLAGS := -Wall -Wextra -Werror -pedantic -Isdk/include $(SANFLAGS) $(CFLAGS)
$(BUILD)/original_app: spec/support/original_app.c sdk/include/polaris_api.h $(SDK_SO)
	$(CC) -std=c99 $(ORIG_APP_FLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD)/sdk -lpolaris_client \
	    -Wl,-rpath,'$$ORIGIN/sdk'

$(BUILD)/original_app_cxx: spec/support/original_app.c sdk/include/polaris_api.h $(SDK_SO)
	$(CXX) -x c++ -std=c++11 $(ORIG_APP_FLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD)/sdk -lpolaris_client \
	    -Wl,-rpath,'$$ORIGIN/sdk'

# built without sanitizers: it must die of its own SIGSEGV, not ASan's report
$(BUILD)/polaris-crasher: spec/support/crasher.c
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $<

$(BUILD)/sdk/report_event: sdk/examples/report_event.c $(SDK_SO)
	$(CC) $(BASE_CFLAGS) $(SANFLAGS) $(CFLAGS) -Isdk/include $(LDFLAGS) -o $@ $< \
	    -L$(BUILD)/sdk -lpolaris_client -Wl,-rpath,'$$ORIGIN'

# the Makefile too: an object moved into the list must not be missed
$(LIBCORE): $(LIB_OBJS) Makefile
	rm -f $@ && $(AR) rcs $@ $(filter %.o,$^)

$(LIBPIC): $(PIC_OBJS) Makefile
	rm -f $@ && $(AR) rcs $@ $(filter %.o,$^)

$(BUILD)/polarisd: $(DAEMON_OBJS) $(LIBCORE)
	$(CC) $(SANFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LUA_LIBS) $(DEP_LIBS) $(MALLOC_LIBS)

# The daemon once more with test hooks (polaris._test_hang, for the
# watchdog's spec): only bind_polaris.c differs. Never installed.
HOOKS_OBJS := $(filter-out $(BUILD)/core/runtime/bind_polaris.o,$(DAEMON_OBJS)) $(BUILD)/hooks/core/runtime/bind_polaris.o
$(BUILD)/hooks/core/runtime/bind_polaris.o: core/runtime/bind_polaris.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -DPOLARIS_TEST_HOOKS -c $< -o $@

$(BUILD)/polarisd-hooks: $(HOOKS_OBJS) $(LIBCORE)
	$(CC) $(SANFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LUA_LIBS) $(DEP_LIBS) $(MALLOC_LIBS)

$(BUILD)/polaris-plugin-host: $(HOST_OBJS) $(LIBCORE)
	$(CC) $(SANFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LUA_LIBS) $(DEP_LIBS) $(SECCOMP_LIBS)

CTL_OBJS := $(patsubst %.c,$(BUILD)/%.o,tools/polarisctl.c tools/ctl_common.c tools/ctl_status.c tools/ctl_send.c \
            tools/ctl_guest.c tools/ctl_plugin_test.c tools/ctl_sign.c)

$(BUILD)/polarisctl: $(CTL_OBJS) $(LIBCORE)
	$(CC) $(SANFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LUA_LIBS) $(DEP_LIBS)

$(BUILD)/lua/polaris/codec.so: $(BUILD)/pic/spec/support/codec_mod.o $(LIBPIC)
	@mkdir -p $(dir $@)
	$(CC) -shared $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

# test-only: the plugins' bounded string functions and cjson, for
# differential specs against the stock libraries
$(BUILD)/lua/polaris/plugin_libs.so: $(BUILD)/pic/spec/support/plugin_libs_mod.o $(LIBPIC)
	@mkdir -p $(dir $@)
	$(CC) -shared $(CFLAGS) $(LDFLAGS) -o $@ $^

$(BUILD)/lua/ptest.so: $(BUILD)/pic/spec/support/ptest.o
	@mkdir -p $(dir $@)
	$(CC) -shared $(CFLAGS) $(LDFLAGS) -o $@ $^

$(UNIT_BIN): $(UNIT_OBJS) $(LIBCORE)
	$(CC) $(SANFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LUA_LIBS) $(DEP_LIBS)

$(BUILD)/bench/relay: $(BUILD)/bench/relay.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lev

$(BUILD)/bench/loadgen.o: ALL_CFLAGS += -Isdk/include
$(BUILD)/bench/loadgen: $(BUILD)/bench/loadgen.o $(SDK_A)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lpthread

$(BUILD)/bench/sdk_bench: bench/sdk_bench.c $(SDK_A)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -Isdk/include $(LDFLAGS) -o $@ $< $(SDK_A) -lpthread

$(BUILD)/bench/paced: bench/paced.c $(SDK_SO) $(LIBCORE)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -Isdk/include $(LDFLAGS) -o $@ $< $(LIBCORE) \
	    -L$(BUILD)/sdk -lpolaris_client -Wl,-rpath,'$$ORIGIN/../sdk' $(DEP_LIBS)

deps:
	@tools/deps.sh

# The targets a newcomer runs first install the packages, then build in a
# second make: this one read pkg-config's flags (and the compiler's include
# paths) when it parsed the Makefile, before `deps` installed anything.
bench: deps
	@tools/deps.sh bench
	@$(MAKE) --no-print-directory all $(BUILD)/bench/relay $(BUILD)/bench/loadgen $(BUILD)/bench/sdk_bench \
	    $(BUILD)/bench/paced
	@BUILD=$(BUILD) LUA_CPATH="$(CURDIR)/$(BUILD)/lua/?.so;;" \
	    LUA_PATH="$(CURDIR)/spec/support/?.lua;;" lua5.4 bench/run.lua

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/polarisd -c conf/polarisd.conf --foreground

test: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tools/run-tests.sh

# The README's two commands on a fresh Debian 12 root file system (debootstrap,
# cached), against the committed REV (default HEAD). Needs root.
fresh-check:
	@tools/fresh-check.sh

# libFuzzer targets (clang, ASan + UBSan), one per input surface; each runs
# SECONDS (default 10) from the checked-in seeds, new finds kept in
# build-fuzz/corpus. A crash leaves its input in build-fuzz/ and fails.
SECONDS    ?= 10
FUZZ_CC    ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -std=gnu11 -D_GNU_SOURCE -Icore $(DEP_CFLAGS)
FUZZ_TARGETS := lsp plp json luajson manifest host strmatch
FUZZ_CORE := $(addprefix core/lib/,buf.c rxbuf.c envelope.c) \
             $(addprefix core/wire/,json_scan.c gzip_codec.c lsp_codec.c plp_codec.c event_json.c \
               command_msg.c plugin_host_proto.c) \
             $(addprefix core/runtime/,lua_pack.c lua_json.c lua_event.c lua_strmatch.c)
fuzz: deps
	@tools/deps.sh fuzz
	@mkdir -p build-fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	    echo "== fuzz_$$t"; \
	    $(FUZZ_CC) $(FUZZ_FLAGS) -o build-fuzz/fuzz_$$t spec/fuzz/fuzz_$$t.c $(FUZZ_CORE) \
	        $(LUA_LIBS) $(DEP_LIBS); \
	    mkdir -p build-fuzz/corpus/$$t; \
	    ASAN_OPTIONS=detect_leaks=1 build-fuzz/fuzz_$$t -max_total_time=$(SECONDS) -timeout=10 \
	        -rss_limit_mb=2048 -artifact_prefix=build-fuzz/crash-$$t- -print_final_stats=1 \
	        build-fuzz/corpus/$$t spec/fuzz/seeds/$$t 2>&1 | grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|Done)" || true; \
	    if ls build-fuzz/crash-$$t-* >/dev/null 2>&1; then echo "fuzz_$$t found a crash: build-fuzz/crash-$$t-*"; exit 1; fi; \
	done

# luacheck over every shipped Lua file (plugins, strategies, the runtime's
# helpers, the specs, tools), with the polaris globals declared in
# .luacheckrc; then the C sources' layers and loops (tools/layers.lua)
lint: deps
	luacheck --formatter plain --codes plugins strategies lua spec bench tools
	@$(MAKE) --no-print-directory all
	lua5.4 tools/layers.lua $(BUILD)

asan: deps
	$(MAKE) BUILD=build-asan SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" CFLAGS="-O1 -g" MALLOC_LIBS= test

install: $(BINS) $(SDK_SO) $(SDK_A)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 0755 $(SDK_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SDK_SO)) $(DESTDIR)$(LIBDIR)/$(SDK_SONAME)
	ln -sf $(SDK_SONAME) $(DESTDIR)$(LIBDIR)/libpolaris_client.so
	install -m 0644 $(SDK_A) $(DESTDIR)$(LIBDIR)/
	install -m 0644 sdk/include/polaris_api.h $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' sdk/polaris-client.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/polaris-client.pc
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/strategies \
	    $(DESTDIR)$(DATADIR)/plugins $(DESTDIR)$(DATADIR)/lua $(DESTDIR)$(SYSCONFDIR)/polaris
	install -m 0755 $(BUILD)/polarisd $(DESTDIR)$(SBINDIR)/polarisd
	install -m 0755 $(BUILD)/polarisctl $(DESTDIR)$(BINDIR)/polarisctl
	install -D -m 0755 $(BUILD)/polaris-plugin-host $(DESTDIR)$(LIBEXECDIR)/polaris-plugin-host
	@# the configuration is the operator's: an existing one is never overwritten
	if [ -e $(DESTDIR)$(SYSCONFDIR)/polaris/polarisd.conf ]; then \
	    install -m 0644 conf/polarisd.conf $(DESTDIR)$(SYSCONFDIR)/polaris/polarisd.conf.dist; \
	    echo "kept $(DESTDIR)$(SYSCONFDIR)/polaris/polarisd.conf; the new default is polarisd.conf.dist"; \
	else install -m 0644 conf/polarisd.conf $(DESTDIR)$(SYSCONFDIR)/polaris/polarisd.conf; fi
	for f in $$(find strategies plugins lua -type f -name '*.lua' -o -type f -name '*.json'); do \
	    install -D -m 0644 $$f $(DESTDIR)$(DATADIR)/$$f; done
	install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 \
	    $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' conf/polarisd.service \
	    > $(DESTDIR)$(SYSTEMDUNITDIR)/polarisd.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/polarisd.service
	for m in docs/man/*.[1-8]; do \
	    install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/; done

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/polarisd $(DESTDIR)$(BINDIR)/polarisctl
	rm -rf $(DESTDIR)$(LIBEXECDIR)
	rm -f $(DESTDIR)$(LIBDIR)/libpolaris_client.* $(DESTDIR)$(LIBDIR)/pkgconfig/polaris-client.pc
	rm -f $(DESTDIR)$(INCLUDEDIR)/polaris_api.h
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/polarisd.service
	rm -f $(DESTDIR)$(MANDIR)/man8/polarisd.8 $(DESTDIR)$(MANDIR)/man1/polarisctl.1 \
	    $(DESTDIR)$(MANDIR)/man3/polaris_api.3 $(DESTDIR)$(MANDIR)/man7/polaris-plugins.7
	rm -rf $(DESTDIR)$(DATADIR)
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/polaris/polarisd.conf (configuration is yours)"

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
