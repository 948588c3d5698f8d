// Compiled as the engine is: every header the engine may include.
#include "common/message.h"
#include "common/status.h"
#include "common/time.h"
#include "connectors/decoder.h"
#include "connectors/source.h"
#include "engine/engine.h"
#include "sql/target.h"
