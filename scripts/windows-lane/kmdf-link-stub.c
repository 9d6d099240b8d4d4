/* LINK-ONLY STAND-IN for the KMDF stub library WdfDriverEntry.lib. NEVER SHIPPED.
 *
 * The real WdfDriverEntry.lib (WDK only; not redistributable, not available on these machines)
 * provides FxDriverEntry, which binds the driver to the framework through WDFLDR.SYS
 * (WdfVersionBind) before calling DriverEntry, and the globals that binding fills in. The Windows
 * lane links wskaccept against this file instead so that every *other* symbol is proven to
 * resolve. A .sys linked with it calls DriverEntry with no framework bound: it cannot work and
 * must never be installed. scripts/windows-lane/run.sh builds it into target/ only. */

typedef long NTSTATUS;
typedef void *PVOID;

NTSTATUS DriverEntry(PVOID DriverObject, PVOID RegistryPath);

/* Filled by WdfVersionBind in the real stub. */
PVOID WdfDriverGlobals = 0;
PVOID WdfFunctions_01033 = 0;
unsigned long WdfFunctionCount = 0;
unsigned long WdfStructureCount = 0;
PVOID WdfStructures = 0;

NTSTATUS FxDriverEntry(PVOID DriverObject, PVOID RegistryPath)
{
    return DriverEntry(DriverObject, RegistryPath);
}
