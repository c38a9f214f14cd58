/* SPDX-License-Identifier: MIT */
/* The guest page-table walker is public (a CPU model needs it): see
 * <vmmu/guest_walk.h>. */
#include <vmmu/guest_walk.h>
