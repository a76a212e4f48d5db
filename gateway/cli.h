#ifndef GW_CLI_H
#define GW_CLI_H
/* Vendor tools built into build/gateway. Each returns the process exit code:
 * 0 success, 1 the input was bad (with a message on stderr), 2 usage error. */

/* gateway decode --protocol sl651|hj212 --hex BYTES | --text TEXT
 * gateway decode --adapter NAME --hex BYTES | --json TEXT */
int gw_cli_decode(int argc, char **argv);

/* gateway read --profile P --connect tcp://HOST:PORT --unit N */
int gw_cli_read(int argc, char **argv);

/* gateway check-profile FILE|NAME [--against SCENARIO]: validates a Modbus profile
 * alone, prints its read plan and metrics; with a sim scenario, reads it once. */
int gw_cli_check_profile(int argc, char **argv);

#endif
