#ifndef SIM_RUN_H
#define SIM_RUN_H
/* `sim run`: a rehearsal (broker, gateway, devices, platform) (run.c). */

int sim_run_main(int argc, char **argv);

#endif
