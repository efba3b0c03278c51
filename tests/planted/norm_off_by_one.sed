# The layer-norm mean loop stops one column short.
s/for (int c = lane; c < cols; c += WARP) sum += to_float(xr\[c\]);/for (int c = lane; c < cols - 1; c += WARP) sum += to_float(xr[c]);/
