/* wskaccept's substitute-WDK shim, read only by the Windows lane (scripts/windows-lane/run.sh).
 *
 * Debian's mingw-w64 kernel headers predate three documented DDIs the driver and wdk-alloc use.
 * They are declared here from their documented prototypes (learn.microsoft.com, wdm.h), so that
 * bindgen generates them as the real WDK's headers would. Nothing here is shipped. */
#ifndef WSKACCEPT_WDK_SHIM_H
#define WSKACCEPT_WDK_SHIM_H

#include <ntddk.h>

/* POOL_FLAGS (wdm.h, Windows 10 2004 and later). The POOL_FLAG_* values are not declared here:
 * the real headers write them with an MSVC suffix (0x...UI64) that bindgen cannot read, so
 * wdk-sys defines them itself. */
typedef ULONG64 POOL_FLAGS;

/* ExAllocatePool2 (wdm.h). IRQL <= DISPATCH_LEVEL for nonpaged pool. */
NTKERNELAPI PVOID NTAPI ExAllocatePool2(
    POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);

/* KeQueryInterruptTimePrecise (wdm.h, Windows 8.1 and later). Any IRQL. */
NTKERNELAPI ULONG64 NTAPI KeQueryInterruptTimePrecise(PULONG64 QpcTimeStamp);

#endif
