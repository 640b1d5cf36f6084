/*
 * bcryptprimitives.c: a TEST-ONLY stand-in for Windows' bcryptprimitives.dll, for Debian 12's
 * Wine 8, which lacks ProcessPrng (Wine 9 added it). Go 1.22+ programs call ProcessPrng for every
 * random byte and cannot start without it. This DLL is built by the Windows lane of
 * ./build.sh test with mingw-w64 and copied into that test's own Wine prefix only; it is never
 * part of a package a creator downloads. It fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which Wine 8 has.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size)
{
	while (size > 0) {
		ULONG chunk = size > 0x40000000 ? 0x40000000 : (ULONG)size;
		if (!SystemFunction036(data, chunk))
			return FALSE;
		data += chunk;
		size -= chunk;
	}
	return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
	(void)instance; (void)reason; (void)reserved;
	return TRUE;
}
