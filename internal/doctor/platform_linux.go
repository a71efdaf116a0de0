package doctor

// tfoPlatform: the self-test and the probe read TFO outcomes from the kernel, which only Linux has.
const tfoPlatform = true
