/* CRC-16/MODBUS (reflected polynomial 0x8005 as 0xA001, initial value 0xFFFF, no final
 * XOR; check value 0x4B37 over "123456789"). Modbus RTU and SL651-2014 use it; this is the
 * gateway side's one copy (the simulator keeps its own). HJ 212's CRC is not this one (its
 * register update shifts before the XOR) and stays in protocols/hj212_codec.c. */
#ifndef GW_BASE_CRC16_H
#define GW_BASE_CRC16_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of p[0..n). Modbus sends it low byte first; SL651 writes it high byte first
 * (or as four hex digits), which is the caller's business. */
uint16_t gw_crc16_modbus(const uint8_t *p, size_t n);

#endif
