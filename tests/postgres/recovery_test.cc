// Placeholder: tests of the PostgreSQL tier (recovery), written next.
#include <gtest/gtest.h>
