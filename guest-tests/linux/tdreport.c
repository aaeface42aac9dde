/*
 * tdreport: asks the tdx-guest driver for a TDREPORT (TDX_CMD_GET_REPORT0,
 * Linux include/uapi/linux/tdx-guest.h; the driver makes TDG.MR.REPORT)
 * with made-up REPORTDATA and checks what a verifier looks at first:
 * REPORTTYPE (byte 0: 0x81, TDX), the REPORTDATA echoed at byte 128 and
 * the TD's ATTRIBUTES at byte 512 (TDINFO_STRUCT). Prints one line; exit
 * status 0 when every check holds. Built static by scripts/linux-guest for
 * the initramfs's /init.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct tdx_report_req {
	uint8_t reportdata[64];
	uint8_t tdreport[1024];
};

#define TDX_CMD_GET_REPORT0 _IOWR('T', 1, struct tdx_report_req)

int main(void)
{
	static struct tdx_report_req req;
	uint64_t attributes;
	int fd, i;

	for (i = 0; i < 64; i++)
		req.reportdata[i] = (uint8_t)(0xa5 ^ i);
	fd = open("/dev/tdx_guest", O_RDWR);
	if (fd < 0) {
		perror("tdreport: open /dev/tdx_guest");
		return 1;
	}
	if (ioctl(fd, TDX_CMD_GET_REPORT0, &req) < 0) {
		perror("tdreport: TDX_CMD_GET_REPORT0");
		return 1;
	}
	close(fd);
	memcpy(&attributes, &req.tdreport[512], sizeof(attributes));
	printf("tdreport: type %#x, REPORTDATA %s, ATTRIBUTES %#llx, MRTD ", req.tdreport[0],
	       memcmp(&req.tdreport[128], req.reportdata, 64) ? "differs" : "echoed",
	       (unsigned long long)attributes);
	/* TDINFO_STRUCT at 512: ATTRIBUTES, XFAM, then the 48-byte MRTD. */
	for (int i = 528; i < 528 + 48; i++)
		printf("%02x", req.tdreport[i]);
	printf("\n");
	return req.tdreport[0] != 0x81 || memcmp(&req.tdreport[128], req.reportdata, 64);
}
