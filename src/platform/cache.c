/* SPDX-License-Identifier: MIT */
#include "cache.h"

int vmmu_cache_init(struct vmmu_cache *c, int capacity, const struct vmmu_cache_ops *ops,
		    void *ctx)
{
	*c = (struct vmmu_cache){ 0 };
	if (capacity <= 0 || !ops)
		return -EINVAL;
	c->objects = calloc((size_t)capacity, sizeof(void *));
	if (!c->objects)
		return -ENOMEM;
	c->capacity = capacity;
	c->ops = ops;
	c->ctx = ctx;
	return 0;
}

int vmmu_cache_topup(struct vmmu_cache *c, int min)
{
	if (min > c->capacity || min < 0)
		return -EINVAL;
	if (c->nobjs >= min)
		return 0;
	c->nobjs += (int)c->ops->alloc_batch(c->ctx, c->objects + c->nobjs,
					     (unsigned)(c->capacity - c->nobjs));
	return c->nobjs >= min ? 0 : -ENOMEM;
}

void *vmmu_cache_alloc(struct vmmu_cache *c)
{
	if (WARN_ON(c->nobjs <= 0))
		return NULL;
	return c->objects[--c->nobjs];
}

void vmmu_cache_push(struct vmmu_cache *c, void *obj)
{
	if (c->nobjs < c->capacity)
		c->objects[c->nobjs++] = obj;
	else
		c->ops->free(c->ctx, obj);
}

void vmmu_cache_destroy(struct vmmu_cache *c)
{
	if (!c->objects)
		return;
	while (c->nobjs > 0)
		c->ops->free(c->ctx, c->objects[--c->nobjs]);
	free(c->objects);
	c->objects = NULL;
}
