#ifndef SIM_PLATFORM_H
#define SIM_PLATFORM_H
/* The stand-in city platform, an MQTT subscriber (platform.c). */

int sim_platform_main(int argc, char **argv);

#endif
