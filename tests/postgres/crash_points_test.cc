// Placeholder: tests of the PostgreSQL tier (crash_points), written next.
#include <gtest/gtest.h>
