/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * snpreq: the SNP guest-request protocol from the guest's side, as Linux's
 * sev-guest driver speaks it (drivers/virt/coco/sev-guest/sev-guest.c):
 * a message header and payload sealed with AES-256-GCM under a VMPCK from
 * the secrets page, the sequence number in the IV, sent through the GHCB
 * (NAE event 0x80000011, the request and response pages shared). The
 * AMD-SP answers MSG_REPORT_REQ with an ATTESTATION_REPORT sealed under
 * the same key with the next sequence number (SEV-SNP firmware ABI,
 * "Guest Messages" and "MSG_REPORT_REQ").
 *
 * Checked: a good request and its response (tag, header, report fields);
 * a replayed sequence number, a tampered ciphertext and a message sealed
 * under another VMPCK than its header names are refused with the
 * firmware's INVALID_PARAM, consume no sequence number and leave the
 * channel working; VMPCK1 has a sequence of its own and cannot ask for a
 * report at VMPL 0.
 */
#include "libcflat.h"
#include "snp.h"

/*
 * AES-256 (FIPS 197) and GCM with a 96-bit IV and a 128-bit tag (NIST SP
 * 800-38D), plain C for a guest without SSE. Small and slow by design,
 * and kept in this test: the runtime links into every image, whose layout
 * other tests' expectations depend on.
 */
struct aes256 {
	u8 round_key[15][16];
};

/* The S-box of FIPS 197 figure 7. */
static const u8 sbox[256] = {
	0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
	0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
	0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
	0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
	0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
	0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
	0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
	0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
	0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
	0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
	0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
	0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
	0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
	0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
	0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
	0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
};

/* Multiplication by x in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1. */
static u8 xtime(u8 b)
{
	return (u8)((b << 1) ^ ((b >> 7) * 0x1b));
}

/* FIPS 197 §5.2: Nk = 8 words of key, Nr = 14 rounds, 60 words. */
static void aes256_init(struct aes256 *a, const u8 key[32])
{
	u8 *w = &a->round_key[0][0];
	u8 rcon = 1;
	int i;

	memcpy(w, key, 32);
	for (i = 8; i < 60; i++) {
		u8 t[4];

		memcpy(t, &w[4 * (i - 1)], 4);
		if (i % 8 == 0) {
			u8 first = t[0];

			t[0] = sbox[t[1]] ^ rcon;
			t[1] = sbox[t[2]];
			t[2] = sbox[t[3]];
			t[3] = sbox[first];
			rcon = xtime(rcon);
		} else if (i % 8 == 4) {
			for (int j = 0; j < 4; j++)
				t[j] = sbox[t[j]];
		}
		for (int j = 0; j < 4; j++)
			w[4 * i + j] = w[4 * (i - 8) + j] ^ t[j];
	}
}

/* FIPS 197 §5.1; the state is column-major, s[4 * column + row]. */
static void aes256_encrypt_block(const struct aes256 *a, const u8 in[16], u8 out[16])
{
	u8 s[16], t[16];
	int round, i, c;

	for (i = 0; i < 16; i++)
		s[i] = in[i] ^ a->round_key[0][i];
	for (round = 1; round <= 14; round++) {
		/* SubBytes and ShiftRows: row r rotates left by r columns. */
		for (c = 0; c < 4; c++)
			for (i = 0; i < 4; i++)
				t[4 * c + i] = sbox[s[4 * ((c + i) % 4) + i]];
		/* MixColumns, except in the last round. */
		for (c = 0; c < 4; c++) {
			u8 *col = &t[4 * c];
			u8 x = col[0] ^ col[1] ^ col[2] ^ col[3], c0 = col[0];

			if (round == 14)
				break;
			col[0] ^= x ^ xtime(col[0] ^ col[1]);
			col[1] ^= x ^ xtime(col[1] ^ col[2]);
			col[2] ^= x ^ xtime(col[2] ^ col[3]);
			col[3] ^= x ^ xtime(col[3] ^ c0);
		}
		for (i = 0; i < 16; i++)
			s[i] = t[i] ^ a->round_key[round][i];
	}
	memcpy(out, s, 16);
}

/* x = x * y in GF(2^128) with GCM's bit order (SP 800-38D algorithm 1). */
static void gf128_mul(u8 x[16], const u8 y[16])
{
	u8 z[16] = { 0 }, v[16];
	int i, j;

	memcpy(v, y, 16);
	for (i = 0; i < 128; i++) {
		bool carry;

		if (x[i / 8] & (0x80 >> (i % 8)))
			for (j = 0; j < 16; j++)
				z[j] ^= v[j];
		carry = v[15] & 1;
		for (j = 15; j > 0; j--)
			v[j] = (u8)((v[j] >> 1) | (v[j - 1] << 7));
		v[0] >>= 1;
		if (carry)
			v[0] ^= 0xe1;
	}
	memcpy(x, z, 16);
}

/* GHASH over data zero-padded to whole blocks, folded into y. */
static void ghash_update(u8 y[16], const u8 h[16], const u8 *data, u64 len)
{
	while (len) {
		u64 n = len < 16 ? len : 16;

		for (u64 i = 0; i < n; i++)
			y[i] ^= data[i];
		gf128_mul(y, h);
		data += n;
		len -= n;
	}
}

/* CTR mode from counter block ctr (its last 32 bits increment), in place. */
static void gctr(const struct aes256 *a, const u8 ctr0[16], u8 *buf, u64 len)
{
	u8 ctr[16], ks[16];

	memcpy(ctr, ctr0, 16);
	while (len) {
		u64 n = len < 16 ? len : 16;

		for (int i = 15; i >= 12 && ++ctr[i] == 0; i--)
			;
		aes256_encrypt_block(a, ctr, ks);
		for (u64 i = 0; i < n; i++)
			buf[i] ^= ks[i];
		buf += n;
		len -= n;
	}
}

/* The tag of (aad, ciphertext): GHASH with the lengths, masked by E(K, J0). */
static void gcm_tag(const struct aes256 *a, const u8 j0[16], const u8 *aad, u64 aad_len,
		    const u8 *ct, u64 len, u8 tag[16])
{
	u8 h[16] = { 0 }, y[16] = { 0 }, lens[16], mask[16];

	aes256_encrypt_block(a, h, h);
	ghash_update(y, h, aad, aad_len);
	ghash_update(y, h, ct, len);
	for (int i = 0; i < 8; i++) {
		lens[i] = (u8)((aad_len * 8) >> (56 - 8 * i));
		lens[8 + i] = (u8)((len * 8) >> (56 - 8 * i));
	}
	ghash_update(y, h, lens, 16);
	aes256_encrypt_block(a, j0, mask);
	for (int i = 0; i < 16; i++)
		tag[i] = y[i] ^ mask[i];
}

static void gcm_j0(const u8 iv[12], u8 j0[16])
{
	memcpy(j0, iv, 12);
	j0[12] = j0[13] = j0[14] = 0;
	j0[15] = 1;
}

static void aes256_gcm_seal(const u8 key[32], const u8 iv[12], const u8 *aad, u64 aad_len,
		     u8 *buf, u64 len, u8 tag[16])
{
	struct aes256 a;
	u8 j0[16];

	aes256_init(&a, key);
	gcm_j0(iv, j0);
	gctr(&a, j0, buf, len);
	gcm_tag(&a, j0, aad, aad_len, buf, len, tag);
}

static bool aes256_gcm_open(const u8 key[32], const u8 iv[12], const u8 *aad, u64 aad_len,
		     u8 *buf, u64 len, const u8 tag[16])
{
	struct aes256 a;
	u8 j0[16], want[16], diff = 0;

	aes256_init(&a, key);
	gcm_j0(iv, j0);
	gcm_tag(&a, j0, aad, aad_len, buf, len, want);
	for (int i = 0; i < 16; i++)
		diff |= want[i] ^ tag[i];
	if (diff)
		return false;
	gctr(&a, j0, buf, len);
	return true;
}

/* struct snp_guest_msg_hdr (include/linux/sev-guest.h... and the ABI). */
#define HDR_AUTHTAG 0x00
#define HDR_SEQNO 0x20
#define HDR_ALGO 0x30
#define HDR_VERSION 0x31
#define HDR_SIZE 0x32
#define HDR_MSG_TYPE 0x34
#define HDR_MSG_VERSION 0x35
#define HDR_MSG_SIZE 0x36
#define HDR_MSG_VMPCK 0x3c
#define HDR_LEN 0x60
/* The AAD: the header from ALGO on. */
#define HDR_AAD HDR_ALGO
#define AAD_LEN (HDR_LEN - HDR_AAD)
#define ALGO_AES_256_GCM 1
#define MSG_REPORT_REQ 5
#define MSG_REPORT_RSP 6
/* MSG_REPORT_REQ: REPORT_DATA[64], VMPL, KEY_SEL, reserved. */
#define REPORT_REQ_LEN 96
/* MSG_REPORT_RSP: STATUS, REPORT_SIZE, reserved, the report. */
#define REPORT_RSP_REPORT 0x20
#define REPORT_LEN 1184
/* ATTESTATION_REPORT fields. */
#define REPORT_VERSION 0x00
#define REPORT_VMPL 0x30
#define REPORT_DATA 0x50
#define REPORT_MEASUREMENT 0x90
/* Firmware status (SNP_GUEST_REQUEST in SW_EXITINFO2[31:0]). */
#define SEV_RET_INVALID_PARAM 0x16

static u8 *req_page, *rsp_page;
static u8 vmpck[2][32];

static const u8 *secrets_vmpck(int i)
{
	return (const u8 *)pa_to_ptr(SNP_SECRETS_PAGE + SNP_SECRETS_VMPCK0_OFF + 32 * i);
}

static void iv_of(u64 seqno, u8 iv[12])
{
	memset(iv, 0, 12);
	memcpy(iv, &seqno, 8);
}

/*
 * Writes a sealed MSG_REPORT_REQ with sequence number seqno into the
 * request page: header VMPCK hdr_vmpck, sealed under key.
 */
static void seal_report_req(u64 seqno, u8 hdr_vmpck, const u8 key[32], u32 vmpl,
			    const u8 data[64])
{
	u8 iv[12], tag[16];
	u16 hsz = HDR_LEN, msz = REPORT_REQ_LEN;

	memset(req_page, 0, PAGE_SIZE);
	memcpy(&req_page[HDR_SEQNO], &seqno, 8);
	req_page[HDR_ALGO] = ALGO_AES_256_GCM;
	req_page[HDR_VERSION] = 1;
	memcpy(&req_page[HDR_SIZE], &hsz, 2);
	req_page[HDR_MSG_TYPE] = MSG_REPORT_REQ;
	req_page[HDR_MSG_VERSION] = 1;
	memcpy(&req_page[HDR_MSG_SIZE], &msz, 2);
	req_page[HDR_MSG_VMPCK] = hdr_vmpck;
	memcpy(&req_page[HDR_LEN], data, 64);
	memcpy(&req_page[HDR_LEN + 64], &vmpl, 4);
	iv_of(seqno, iv);
	aes256_gcm_seal(key, iv, &req_page[HDR_AAD], AAD_LEN, &req_page[HDR_LEN], REPORT_REQ_LEN, tag);
	memcpy(&req_page[HDR_AUTHTAG], tag, 16);
}

/* The VMGEXIT: SW_EXITINFO1 in *info1, SW_EXITINFO2 returned. */
static u64 send(u64 *info1)
{
	struct ghcb *g = ghcb_start();
	u64 info2;

	memset(rsp_page, 0, PAGE_SIZE);
	*info1 = ghcb_call(g, SVM_VMGEXIT_GUEST_REQUEST, ptr_to_pa(req_page), ptr_to_pa(rsp_page));
	info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	ghcb_end(g);
	return info2;
}

/*
 * Opens the response under key: it must be MSG_REPORT_RSP with sequence
 * number seqno for VMPCK hdr_vmpck. Returns the payload (its size in
 * *size) or NULL.
 */
static const u8 *open_response(u64 seqno, u8 hdr_vmpck, const u8 key[32], u16 *size)
{
	u8 iv[12];
	u16 msz;
	u64 got;

	memcpy(&got, &rsp_page[HDR_SEQNO], 8);
	memcpy(&msz, &rsp_page[HDR_MSG_SIZE], 2);
	if (got != seqno || rsp_page[HDR_MSG_TYPE] != MSG_REPORT_RSP ||
	    rsp_page[HDR_MSG_VMPCK] != hdr_vmpck || rsp_page[HDR_ALGO] != ALGO_AES_256_GCM ||
	    msz < REPORT_RSP_REPORT || msz > PAGE_SIZE - HDR_LEN) {
		printf("response header: seqno %lu type %u vmpck %u size %u\n", got,
		       rsp_page[HDR_MSG_TYPE], rsp_page[HDR_MSG_VMPCK], msz);
		return NULL;
	}
	iv_of(seqno, iv);
	if (!aes256_gcm_open(key, iv, &rsp_page[HDR_AAD], AAD_LEN, &rsp_page[HDR_LEN], msz,
			     &rsp_page[HDR_AUTHTAG]))
		return NULL;
	*size = msz;
	return &rsp_page[HDR_LEN];
}

static u32 u32_at(const u8 *p)
{
	u32 v;

	memcpy(&v, p, 4);
	return v;
}

/* A good request: the report carries data at vmpl. */
static void good_request(const char *what, u64 seqno, int key, u32 vmpl)
{
	u8 data[64];
	const u8 *rsp;
	u64 info1, info2;
	bool zero = true;
	u16 size = 0;

	for (int i = 0; i < 64; i++)
		data[i] = (u8)(seqno * 31 + i + key);
	seal_report_req(seqno, key, vmpck[key], vmpl, data);
	info2 = send(&info1);
	report(info1 == 0 && info2 == 0, "%s: answered (%lx %lx)", what, info1, info2);
	rsp = open_response(seqno + 1, key, vmpck[key], &size);
	report(rsp, "%s: the response opens under VMPCK%d with sequence number %lu", what, key,
	       seqno + 1);
	if (!rsp)
		return;
	report(size == REPORT_RSP_REPORT + REPORT_LEN && u32_at(rsp) == 0 &&
	       u32_at(rsp + 4) == REPORT_LEN,
	       "%s: MSG_REPORT_RSP status %u, report size %u", what, u32_at(rsp), u32_at(rsp + 4));
	rsp += REPORT_RSP_REPORT;
	for (int i = 0; i < 48; i++)
		zero &= rsp[REPORT_MEASUREMENT + i] == 0;
	report(u32_at(rsp + REPORT_VERSION) >= 2 && u32_at(rsp + REPORT_VMPL) == vmpl &&
	       !memcmp(rsp + REPORT_DATA, data, 64) && !zero,
	       "%s: report version %u, VMPL %u, REPORT_DATA echoed, MEASUREMENT set", what,
	       u32_at(rsp + REPORT_VERSION), u32_at(rsp + REPORT_VMPL));
}

/* A request the firmware must refuse: INVALID_PARAM, SW_EXITINFO1 0. */
static void refused(const char *what)
{
	u64 info1, info2 = send(&info1);

	report(info1 == 0 && info2 == SEV_RET_INVALID_PARAM,
	       "%s: refused with INVALID_PARAM (%lx %lx)", what, info1, info2);
}

static void test_aes_gcm(void)
{
	/* SP 800-38D test cases 13 and 14 (AES-256, zero key and IV). */
	static const u8 t13[16] = { 0x53, 0x0f, 0x8a, 0xfb, 0xc7, 0x45, 0x36, 0xb9,
				    0xa9, 0x63, 0xb4, 0xf1, 0xc4, 0xcb, 0x73, 0x8b };
	static const u8 c14[16] = { 0xce, 0xa7, 0x40, 0x3d, 0x4d, 0x60, 0x6b, 0x6e,
				    0x07, 0x4e, 0xc5, 0xd3, 0xba, 0xf3, 0x9d, 0x18 };
	static const u8 t14[16] = { 0xd0, 0xd1, 0xc8, 0xa7, 0x99, 0x99, 0x6b, 0xf0,
				    0x26, 0x5b, 0x98, 0xb5, 0xd4, 0x8a, 0xb9, 0x19 };
	u8 key[32] = { 0 }, iv[12] = { 0 }, buf[16] = { 0 }, tag[16];

	aes256_gcm_seal(key, iv, NULL, 0, buf, 0, tag);
	report(!memcmp(tag, t13, 16), "AES-256-GCM: test case 13");
	aes256_gcm_seal(key, iv, NULL, 0, buf, 16, tag);
	report(!memcmp(buf, c14, 16) && !memcmp(tag, t14, 16), "AES-256-GCM: test case 14");
	report(aes256_gcm_open(key, iv, NULL, 0, buf, 16, tag) && !memcmp(buf, (u8[16]){ 0 }, 16),
	       "AES-256-GCM: test case 14 opens");
	tag[0] ^= 1;
	report(!aes256_gcm_open(key, iv, NULL, 0, buf, 16, tag), "AES-256-GCM: a bad tag fails");
}

int main(void)
{
	u8 data[64] = { 0 };

	if (!is_snp_guest()) {
		report(false, "not an SNP guest (vm-type=snp, -cpu max,phys-bits=52?)");
		return 1;
	}
	test_aes_gcm();

	memcpy(vmpck[0], secrets_vmpck(0), 32);
	memcpy(vmpck[1], secrets_vmpck(1), 32);
	report(memcmp(vmpck[0], vmpck[1], 32) && memcmp(vmpck[0], data, 32),
	       "secrets page: VMPCK0 and VMPCK1 set and different");

	req_page = alloc_page();
	rsp_page = alloc_page();
	if (set_memory_shared(ptr_to_pa(req_page), 1) || set_memory_shared(ptr_to_pa(rsp_page), 1)) {
		report(false, "request and response pages shared");
		return 1;
	}

	report_prefix_push("VMPCK0");
	good_request("sequence number 1", 1, 0, 0);
	/* Replay: the same sealed message again. */
	seal_report_req(1, 0, vmpck[0], 0, data);
	refused("sequence number 1 again (a replay)");
	/* The next number, but one ciphertext byte flipped. */
	seal_report_req(3, 0, vmpck[0], 0, data);
	req_page[HDR_LEN + 5] ^= 0x40;
	refused("a tampered ciphertext");
	/* The header says VMPCK0, the key is VMPCK1's. */
	seal_report_req(3, 0, vmpck[1], 0, data);
	refused("sealed under another VMPCK than the header names");
	/* A sequence number ahead of the firmware's. */
	seal_report_req(5, 0, vmpck[0], 0, data);
	refused("sequence number 5 where 3 is due");
	/* The refusals consumed nothing. */
	good_request("sequence number 3", 3, 0, 0);
	report_prefix_pop();

	report_prefix_push("VMPCK1");
	good_request("its own sequence number 1, VMPL 1", 1, 1, 1);
	/* A report for a more privileged VMPL than the key's. */
	seal_report_req(3, 1, vmpck[1], 0, data);
	{
		u16 size = 0;
		u64 info1, info2 = send(&info1);
		const u8 *rsp = open_response(4, 1, vmpck[1], &size);

		report(info1 == 0 && info2 == 0 && rsp && size == REPORT_RSP_REPORT &&
		       u32_at(rsp) == SEV_RET_INVALID_PARAM && u32_at(rsp + 4) == 0,
		       "VMPL 0 through VMPCK1: MSG_REPORT_RSP status INVALID_PARAM, no report");
	}
	report_prefix_pop();

	set_memory_private(ptr_to_pa(req_page), 1);
	set_memory_private(ptr_to_pa(rsp_page), 1);
	return 0;
}
