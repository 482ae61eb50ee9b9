#include "agent/cli.h"

int main(int argc, char** argv) { return tagrelay::RunCli(argc, argv); }
