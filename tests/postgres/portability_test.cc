// Placeholder: tests of the PostgreSQL tier (portability), written next.
#include <gtest/gtest.h>
