/*
 * fake_nvml.c: a TEST-ONLY stand-in for NVIDIA's nvml.dll, for the Windows lane of
 * ./build.sh test, which has no GPU. It is built with mingw-w64 and copied into that test's own
 * Wine prefix only; it is never part of a package a creator downloads.
 *
 * It plays a scripted machine, as go-nvml's mock/dgx machines do for Linux, through the same C
 * entry points and structs as the real nvml.dll (nvml.h), so the worker's real binding is what
 * gets tested. The script is a text file named by the environment variable FAKE_NVML_SCENARIO,
 * read again at every nvmlInit and nvmlDeviceGetCount, so a test changes the machine while the
 * worker runs by replacing the file:
 *
 *     init 9                      nvmlInit's return code (default 0; 9 = DRIVER_NOT_LOADED)
 *     gpu                         starts a card; the lines below describe it
 *     name NVIDIA GeForce RTX 4090
 *     uuid GPU-11111111-2222-3333-4444-555555555555
 *     total_mb 24564
 *     used_mb 20000               free = total - used
 *     util 35                     or "na": NOT_SUPPORTED, as many consumer cards answer
 *     temp 61                     or "na"
 *     power_mw 120000             or "na"
 *     process graphics game.exe na      graphics|compute, a PID or an exe name (looked up among
 *     process compute 4242 900          the running processes; absent when not running), MB or
 *                                       "na" = NVML_VALUE_NOT_AVAILABLE, as WDDM reports
 *
 * Built with -DFAKE_NVML_OLD_DRIVER it exports only the unversioned entry points (no _v2, no
 * _v3, no nvmlDeviceGetMemoryInfo_v2), as drivers before 2021 did, so the fallbacks are tested.
 */
#include <windows.h>
#include <tlhelp32.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __declspec(dllexport)

enum {
	NVML_SUCCESS = 0,
	NVML_ERROR_UNINITIALIZED = 1,
	NVML_ERROR_INVALID_ARGUMENT = 2,
	NVML_ERROR_NOT_SUPPORTED = 3,
	NVML_ERROR_INSUFFICIENT_SIZE = 7,
	NVML_ERROR_UNKNOWN = 999,
};

#define MAX_GPUS 8
#define MAX_PROCS 32
#define NA (-1LL)

typedef struct {
	int graphics;
	unsigned int pid;    /* 0: look exe up */
	char exe[MAX_PATH];
	long long used_mb;   /* NA: not available */
} fake_proc;

typedef struct {
	char name[96];
	char uuid[96];
	long long total_mb, used_mb;
	long long util, temp, power_mw; /* NA: not supported */
	int nprocs;
	fake_proc procs[MAX_PROCS];
} fake_gpu;

typedef struct {
	int init_return;
	int ngpus;
	fake_gpu gpus[MAX_GPUS];
} fake_machine;

static fake_machine machine;
static int initialized;
static CRITICAL_SECTION lock;

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = 0;
}

static long long number(const char *s)
{
	if (strcmp(s, "na") == 0)
		return NA;
	return _atoi64(s);
}

/* load reads the scenario; a missing or unreadable file is an error. */
static int load(void)
{
	char path[MAX_PATH], line[512];
	fake_machine m;
	FILE *f;
	DWORD n = GetEnvironmentVariableA("FAKE_NVML_SCENARIO", path, sizeof path);
	if (n == 0 || n >= sizeof path)
		return 0;
	f = fopen(path, "r");
	if (!f)
		return 0;
	memset(&m, 0, sizeof m);
	while (fgets(line, sizeof line, f)) {
		char *val;
		fake_gpu *g = m.ngpus > 0 ? &m.gpus[m.ngpus - 1] : NULL;
		trim(line);
		if (line[0] == 0 || line[0] == '#')
			continue;
		val = strchr(line, ' ');
		if (val)
			*val++ = 0;
		else
			val = line + strlen(line);
		if (strcmp(line, "init") == 0) {
			m.init_return = atoi(val);
		} else if (strcmp(line, "gpu") == 0) {
			if (m.ngpus < MAX_GPUS) {
				g = &m.gpus[m.ngpus++];
				g->util = g->temp = g->power_mw = NA;
			}
		} else if (!g) {
			continue;
		} else if (strcmp(line, "name") == 0) {
			lstrcpynA(g->name, val, sizeof g->name);
		} else if (strcmp(line, "uuid") == 0) {
			lstrcpynA(g->uuid, val, sizeof g->uuid);
		} else if (strcmp(line, "total_mb") == 0) {
			g->total_mb = number(val);
		} else if (strcmp(line, "used_mb") == 0) {
			g->used_mb = number(val);
		} else if (strcmp(line, "util") == 0) {
			g->util = number(val);
		} else if (strcmp(line, "temp") == 0) {
			g->temp = number(val);
		} else if (strcmp(line, "power_mw") == 0) {
			g->power_mw = number(val);
		} else if (strcmp(line, "process") == 0 && g->nprocs < MAX_PROCS) {
			char kind[16], who[MAX_PATH], used[32];
			if (sscanf(val, "%15s %259s %31s", kind, who, used) == 3) {
				fake_proc *p = &g->procs[g->nprocs++];
				p->graphics = strcmp(kind, "graphics") == 0;
				p->pid = (unsigned int)strtoul(who, NULL, 10);
				if (p->pid == 0)
					lstrcpynA(p->exe, who, sizeof p->exe);
				p->used_mb = number(used);
			}
		}
	}
	fclose(f);
	machine = m;
	return 1;
}

/* pid_of finds a running process by its exe name, as a real driver would list it. */
static unsigned int pid_of(const char *exe)
{
	PROCESSENTRY32 e;
	unsigned int pid = 0;
	HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
	if (snap == INVALID_HANDLE_VALUE)
		return 0;
	e.dwSize = sizeof e;
	for (BOOL ok = Process32First(snap, &e); ok; ok = Process32Next(snap, &e)) {
		if (lstrcmpiA(e.szExeFile, exe) == 0) {
			pid = e.th32ProcessID;
			break;
		}
	}
	CloseHandle(snap);
	return pid;
}

typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId;
	unsigned int computeInstanceId;
} nvmlProcessInfo_t; /* nvmlProcessInfo_v2_t, for the _v2 and _v3 entry points */

typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;

#define MB (1024ULL * 1024ULL)

static fake_gpu *gpu_of(void *device)
{
	INT_PTR i = (INT_PTR)device - 1;
	if (!initialized || i < 0 || i >= machine.ngpus)
		return NULL;
	return &machine.gpus[i];
}

static int init(void)
{
	int ret;
	EnterCriticalSection(&lock);
	if (!load()) {
		LeaveCriticalSection(&lock);
		return NVML_ERROR_UNKNOWN;
	}
	ret = machine.init_return;
	if (ret == NVML_SUCCESS)
		initialized++;
	LeaveCriticalSection(&lock);
	return ret;
}

static int get_count(unsigned int *count)
{
	int ret = NVML_SUCCESS;
	if (!count)
		return NVML_ERROR_INVALID_ARGUMENT;
	EnterCriticalSection(&lock);
	if (!initialized)
		ret = NVML_ERROR_UNINITIALIZED;
	else if (!load())
		ret = NVML_ERROR_UNKNOWN;
	else
		*count = (unsigned int)machine.ngpus;
	LeaveCriticalSection(&lock);
	return ret;
}

static int get_handle(unsigned int index, void **device)
{
	if (!initialized)
		return NVML_ERROR_UNINITIALIZED;
	if (!device || index >= (unsigned int)machine.ngpus)
		return NVML_ERROR_INVALID_ARGUMENT;
	*device = (void *)(INT_PTR)(index + 1);
	return NVML_SUCCESS;
}

/* processes fills either struct version: size is the bytes of one entry. */
static int processes(void *device, int graphics, unsigned int *count, void *infos, size_t size)
{
	fake_gpu *g = gpu_of(device);
	unsigned int n = 0, need = 0;
	unsigned int pids[MAX_PROCS];
	unsigned long long used[MAX_PROCS];
	if (!g || !count)
		return NVML_ERROR_INVALID_ARGUMENT;
	for (int i = 0; i < g->nprocs; i++) {
		fake_proc *p = &g->procs[i];
		unsigned int pid = p->pid ? p->pid : pid_of(p->exe);
		if (p->graphics != graphics || pid == 0)
			continue;
		pids[need] = pid;
		used[need] = p->used_mb == NA ? ~0ULL : (unsigned long long)p->used_mb * MB;
		need++;
	}
	if (*count < need) {
		*count = need;
		return NVML_ERROR_INSUFFICIENT_SIZE;
	}
	for (n = 0; n < need; n++) {
		unsigned char *e = (unsigned char *)infos + n * size;
		memset(e, 0, size);
		memcpy(e, &pids[n], sizeof pids[n]);
		memcpy(e + 8, &used[n], sizeof used[n]);
		if (size == sizeof(nvmlProcessInfo_t)) {
			((nvmlProcessInfo_t *)e)->gpuInstanceId = 0xFFFFFFFF;
			((nvmlProcessInfo_t *)e)->computeInstanceId = 0xFFFFFFFF;
		}
	}
	*count = need;
	return NVML_SUCCESS;
}

EXPORT int nvmlInit(void) { return init(); }
EXPORT int nvmlShutdown(void)
{
	if (!initialized)
		return NVML_ERROR_UNINITIALIZED;
	initialized--;
	return NVML_SUCCESS;
}
EXPORT const char *nvmlErrorString(int result) { return result == 0 ? "Success" : "fake_nvml error"; }
EXPORT int nvmlDeviceGetCount(unsigned int *count) { return get_count(count); }
EXPORT int nvmlDeviceGetHandleByIndex(unsigned int index, void **device) { return get_handle(index, device); }

EXPORT int nvmlDeviceGetName(void *device, char *name, unsigned int length)
{
	fake_gpu *g = gpu_of(device);
	if (!g || !name)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (length <= strlen(g->name))
		return NVML_ERROR_INSUFFICIENT_SIZE;
	lstrcpynA(name, g->name, (int)length);
	return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length)
{
	fake_gpu *g = gpu_of(device);
	if (!g || !uuid)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (length <= strlen(g->uuid))
		return NVML_ERROR_INSUFFICIENT_SIZE;
	lstrcpynA(uuid, g->uuid, (int)length);
	return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetMemoryInfo(void *device, nvmlMemory_t *m)
{
	fake_gpu *g = gpu_of(device);
	if (!g || !m)
		return NVML_ERROR_INVALID_ARGUMENT;
	m->total = (unsigned long long)g->total_mb * MB;
	m->used = (unsigned long long)g->used_mb * MB;
	m->free = m->total - m->used;
	return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetUtilizationRates(void *device, nvmlUtilization_t *u)
{
	fake_gpu *g = gpu_of(device);
	if (!g || !u)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (g->util == NA)
		return NVML_ERROR_NOT_SUPPORTED;
	u->gpu = (unsigned int)g->util;
	u->memory = 0;
	return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetTemperature(void *device, int sensor, unsigned int *temp)
{
	fake_gpu *g = gpu_of(device);
	if (!g || !temp || sensor != 0)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (g->temp == NA)
		return NVML_ERROR_NOT_SUPPORTED;
	*temp = (unsigned int)g->temp;
	return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetPowerUsage(void *device, unsigned int *mw)
{
	fake_gpu *g = gpu_of(device);
	if (!g || !mw)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (g->power_mw == NA)
		return NVML_ERROR_NOT_SUPPORTED;
	*mw = (unsigned int)g->power_mw;
	return NVML_SUCCESS;
}

#ifdef FAKE_NVML_OLD_DRIVER
EXPORT int nvmlDeviceGetComputeRunningProcesses(void *device, unsigned int *count, nvmlProcessInfo_v1_t *infos)
{
	return processes(device, 0, count, infos, sizeof(nvmlProcessInfo_v1_t));
}
EXPORT int nvmlDeviceGetGraphicsRunningProcesses(void *device, unsigned int *count, nvmlProcessInfo_v1_t *infos)
{
	return processes(device, 1, count, infos, sizeof(nvmlProcessInfo_v1_t));
}
#else
EXPORT int nvmlInit_v2(void) { return init(); }
EXPORT int nvmlDeviceGetCount_v2(unsigned int *count) { return get_count(count); }
EXPORT int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) { return get_handle(index, device); }

EXPORT int nvmlDeviceGetMemoryInfo_v2(void *device, nvmlMemory_v2_t *m)
{
	fake_gpu *g = gpu_of(device);
	if (!g || !m)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (m->version != (sizeof(nvmlMemory_v2_t) | (2U << 24)))
		return 25; /* NVML_ERROR_ARGUMENT_VERSION_MISMATCH */
	m->total = (unsigned long long)g->total_mb * MB;
	m->reserved = 0;
	m->used = (unsigned long long)g->used_mb * MB;
	m->free = m->total - m->used;
	return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetComputeRunningProcesses_v3(void *device, unsigned int *count, nvmlProcessInfo_t *infos)
{
	return processes(device, 0, count, infos, sizeof(nvmlProcessInfo_t));
}
EXPORT int nvmlDeviceGetGraphicsRunningProcesses_v3(void *device, unsigned int *count, nvmlProcessInfo_t *infos)
{
	return processes(device, 1, count, infos, sizeof(nvmlProcessInfo_t));
}
#endif

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
	(void)instance; (void)reserved;
	if (reason == DLL_PROCESS_ATTACH)
		InitializeCriticalSection(&lock);
	return TRUE;
}
