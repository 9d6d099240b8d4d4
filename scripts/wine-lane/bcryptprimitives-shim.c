/* TEST-ONLY, Wine lane: Wine 8.0 has no bcryptprimitives.dll, whose ProcessPrng Rust's standard
 * library imports on Windows (random seeds). This stand-in, placed beside wskctl.exe inside the
 * lane's Wine prefix run only, forwards to BCryptGenRandom, which Wine's bcrypt.dll implements.
 * Never shipped; Windows 10 and later have the real DLL. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
