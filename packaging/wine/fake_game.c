/*
 * fake_game.c: a TEST-ONLY program for the Windows lane of ./build.sh test. Built with mingw-w64
 * as game.exe into the test's own Wine prefix, it stands for a game the creator starts: it does
 * nothing until it is killed, and the lane's fake nvml.dll lists it as a graphics process by
 * name, so the worker sees a real foreign process with a real PID and image name.
 */
#include <windows.h>

int main(void)
{
	Sleep(INFINITE);
	return 0;
}
