/*
 * qemu-plugin-cvm.h - confidential-VM extension of QEMU's TCG plugin API
 *
 * Copyright (C) 2026 The cvmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * This header is the contract between the cvmem patch series for QEMU and a
 * plugin such as libcvmem.so. The stock plugin API can only observe a guest;
 * the functions declared here let one plugin take part in the guest's memory
 * semantics (a second-stage translation at softTLB fill, instructions with a
 * confidential-computing meaning, exception injection, softTLB flushes).
 *
 * Discovery. A plugin must not link against these symbols directly: it looks
 * up qemu_plugin_cvm_api_version() with dlsym(RTLD_DEFAULT, ...) at install
 * time. If the symbol is absent the plugin runs in an unpatched QEMU and may
 * only observe. If it is present the plugin compares the version it returns
 * with the version it was built against (QEMU_PLUGIN_CVM_API_VERSION) and
 * refuses to install on a mismatch.
 *
 * Versioning. QEMU_PLUGIN_CVM_API_VERSION is bumped on every change of a
 * declaration, a structure layout or a documented behaviour in this file.
 * There is no backward compatibility between versions: plugin and QEMU must
 * agree exactly.
 *
 * The header is self-contained so that bindings can be generated from it
 * without a QEMU tree; inside QEMU it is included after qemu-plugin.h.
 */

#ifndef QEMU_PLUGIN_CVM_H
#define QEMU_PLUGIN_CVM_H

#include <stdbool.h>
#include <stdint.h>

#ifndef QEMU_QEMU_PLUGIN_H
/* Standalone use: ELF symbols are exported by QEMU's dynamic list. */
#define QEMU_PLUGIN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. */
#define QEMU_PLUGIN_CVM_API_VERSION 1

/**
 * qemu_plugin_cvm_api_version() - version of the cvm API this QEMU implements
 *
 * Returns: QEMU_PLUGIN_CVM_API_VERSION as it was when QEMU was built.
 * May be called at any time, including from qemu_plugin_install().
 */
QEMU_PLUGIN_API
uint32_t qemu_plugin_cvm_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* QEMU_PLUGIN_CVM_H */
